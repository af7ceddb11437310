"""Search order, missing-file messages and the download path (fake urlopen, file:// URLs)."""

from __future__ import annotations

import io
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from leafscope.data import MIRRORS, data_search_path, load_images, locate
from leafscope.data.registry import KMNIST, MNIST
from leafscope.errors import DataFileError

LABELS = "t10k-labels-idx1-ubyte.gz"


def test_search_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAFSCOPE_DATA", str(tmp_path / "env"))
    roots = data_search_path(tmp_path / "explicit")
    assert roots[0] == tmp_path / "explicit" and roots[1] == tmp_path / "env"
    assert roots[2] == tmp_path / "xdg-cache" / "leafscope"


def test_data_dir_beats_env(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub / "mnist").mkdir(parents=True)
        shutil.copy(shared_data / "mnist" / LABELS, tmp_path / sub / "mnist" / LABELS)
    monkeypatch.setenv("LEAFSCOPE_DATA", str(tmp_path / "b"))
    assert locate(MNIST, LABELS, data_dir=tmp_path / "a") == tmp_path / "a" / "mnist" / LABELS
    assert locate(MNIST, LABELS) == tmp_path / "b" / "mnist" / LABELS


def test_missing_without_download_lists_folders(tmp_path: Path) -> None:
    with pytest.raises(DataFileError) as info:
        load_images("kmnist", data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path) in msg
    assert KMNIST.files["train-images-idx3-ubyte.gz"].sha256 in msg
    assert "`data_dir=DIR`" in msg and "LEAFSCOPE_DATA" in msg and "download" in msg


def _serve(files: dict[str, bytes], calls: list[str]):
    def fake_urlopen(url, timeout=None):
        calls.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.URLError("no route to host")
        return io.BytesIO(files[name])

    return fake_urlopen


def test_download_verified_into_cache(
    shared_data: Path, no_shared, tmp_path: Path, monkeypatch, _private_cache: Path
) -> None:
    files = {n: (shared_data / "mnist" / n).read_bytes() for n in MNIST.splits["test"]}
    calls: list[str] = []
    monkeypatch.setattr(urllib.request, "urlopen", _serve(files, calls))
    monkeypatch.setitem(
        MIRRORS, "mnist", ["https://mirror-1.invalid/", "https://mirror-2.invalid/"]
    )
    data = load_images("mnist", "test", data_dir=tmp_path / "empty", limit=3)
    assert data.labels.tolist() == [7, 2, 1]
    for name, content in files.items():
        assert (_private_cache / "mnist" / name).read_bytes() == content
    assert calls[0] == "https://mirror-1.invalid/t10k-images-idx3-ubyte.gz"
    assert sorted(p.name for p in (_private_cache / "mnist").iterdir()) == sorted(files)


def test_wrong_bytes_rejected_nothing_left(
    no_shared, tmp_path, monkeypatch, _private_cache
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(urllib.request, "urlopen", _serve({LABELS: b"not the file" * 50}, calls))
    monkeypatch.setitem(MIRRORS, "mnist", ["https://mirror.invalid/"])
    with pytest.raises(DataFileError) as info:
        locate(MNIST, LABELS, data_dir=tmp_path / "empty")
    msg = str(info.value)
    assert MNIST.files[LABELS].sha256 in msg and "https://mirror.invalid/" + LABELS in msg
    assert [p for p in _private_cache.rglob("*") if p.is_file()] == []


def test_first_mirror_down_second_used(
    shared_data: Path, no_shared, tmp_path, monkeypatch, _private_cache
) -> None:
    good = (shared_data / "mnist" / LABELS).read_bytes()

    def fake_urlopen(url, timeout=None):
        if "down" in url:
            raise urllib.error.URLError("timed out")
        return io.BytesIO(good)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setitem(MIRRORS, "mnist", ["https://down.invalid/", "https://up.invalid/"])
    path = locate(MNIST, LABELS, data_dir=tmp_path)
    assert path == _private_cache / "mnist" / LABELS and path.read_bytes() == good


def test_file_url_mirror(
    shared_data: Path, no_shared, tmp_path, monkeypatch, _private_cache
) -> None:
    monkeypatch.setitem(MIRRORS, "mnist", [(shared_data / "mnist").as_uri() + "/"])
    path = locate(MNIST, LABELS, data_dir=tmp_path)
    assert path.read_bytes() == (shared_data / "mnist" / LABELS).read_bytes()


def test_download_failure_message(no_shared, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _serve({}, []))
    with pytest.raises(DataFileError) as info:
        locate(MNIST, LABELS, data_dir=tmp_path)
    msg = str(info.value)
    assert "download failed" in msg and str(tmp_path) in msg and "ossci-datasets" in msg
