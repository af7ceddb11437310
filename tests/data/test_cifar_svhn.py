"""CIFAR-10/100 and SVHN read from small files fabricated in the upstream layout."""

from __future__ import annotations

import io
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.data import load_images
from leafscope.data.registry import CIFAR10, MIRRORS
from leafscope.errors import DataFileError

CIFAR10_NAMES = list(CIFAR10.class_names)


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def _pickle(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)  # the highest protocol Python 2 (upstream) wrote


def _cifar10(root: Path, per_batch: int = 3, test: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    batches, members = {}, {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        batches[name] = (data, labels)
        record = {"batch_label": name, "labels": labels, "data": data,
                  "filenames": [f"{name}_{i}.png" for i in range(n)]}  # fmt: skip
        members[f"cifar-10-batches-py/{name}"] = _pickle(record)
    meta = {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    members["cifar-10-batches-py/batches.meta"] = _pickle(meta)
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    _tar(root / "cifar10" / "cifar-10-python.tar.gz", members)
    return batches


def test_cifar10_shapes_labels_and_pixel_layout(tmp_path: Path, unverified) -> None:
    unverified("cifar10")
    batches = _cifar10(tmp_path)
    train = load_images("cifar10", "train", data_dir=tmp_path, download=False)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.float32
    want = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.images * 255, torch.from_numpy(want.reshape(15, 3, 32, 32)).float())
    # row layout: 1024 red values (rows of 32), then green, then blue
    raw = batches["data_batch_1"][0][1]
    assert train.images[1, 1, 2, 5] * 255 == float(raw[1024 + 2 * 32 + 5])
    labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.labels.tolist() == labels and train.labels.dtype == torch.int64
    assert train.num_classes == 10 and train.class_names == CIFAR10_NAMES
    assert train.transforms == [] and "255" in train.normalization
    test = load_images("cifar-10", "test", data_dir=tmp_path, download=False, limit=2)
    assert test.images.shape == (2, 3, 32, 32) and test.name == "cifar10"
    assert test.labels.tolist() == batches["test_batch"][1][:2]
    part = load_images("cifar10", "train", data_dir=tmp_path, download=False, limit=4)
    assert torch.equal(part.images, train.images[:4])


def test_cifar10_grey_resize_on_request(tmp_path: Path, unverified) -> None:
    unverified("cifar10")
    _cifar10(tmp_path)
    data = load_images("cifar10", "test", data_dir=tmp_path, download=False, grey=True,
                       resize=(28, 28))  # fmt: skip
    assert data.images.shape == (4, 1, 28, 28) and len(data.transforms) == 2


def test_cifar100_fine_and_coarse(tmp_path: Path, unverified) -> None:
    unverified("cifar100")
    rng = np.random.default_rng(1)
    members = {}
    for split, n in (("train", 5), ("test", 3)):
        record = {
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),  # bytes keys too
            b"fine_labels": [99, 0, 42, 7, 13][:n],
            b"coarse_labels": [19, 0, 4, 3, 2][:n],
        }
        members[f"cifar-100-python/{split}"] = _pickle(record)
    fine_names = [f"fine{i}" for i in range(100)]
    meta = {"fine_label_names": fine_names, "coarse_label_names": [f"c{i}" for i in range(20)]}
    members["cifar-100-python/meta"] = _pickle(meta)
    _tar(tmp_path / "cifar-100-python.tar.gz", members)  # directly in the data root
    fine = load_images("cifar100", "train", data_dir=tmp_path, download=False)
    assert fine.images.shape == (5, 3, 32, 32) and fine.labels.tolist() == [99, 0, 42, 7, 13]
    assert fine.num_classes == 100 and fine.class_names == fine_names
    coarse = load_images("cifar-100-coarse", "test", data_dir=tmp_path, download=False)
    assert coarse.labels.tolist() == [19, 0, 4] and coarse.num_classes == 20
    assert coarse.class_names[19] == "c19"


def test_cifar_archive_errors(tmp_path: Path, unverified) -> None:
    unverified("cifar10")
    _cifar10(tmp_path)
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFileError, match="truncated or corrupt"):
        load_images("cifar10", "train", data_dir=tmp_path, download=False)
    path.write_bytes(b"this is not a gzip file")
    with pytest.raises(DataFileError, match="not a readable .tar.gz"):
        load_images("cifar10", "train", data_dir=tmp_path, download=False)
    _tar(path, {"cifar-10-batches-py/test_batch": good[:10]})
    with pytest.raises(DataFileError, match="batches.meta"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)


def test_cifar_refuses_foreign_pickles_and_bad_batches(tmp_path: Path, unverified) -> None:
    unverified("cifar10")
    meta = _pickle({"label_names": CIFAR10_NAMES})
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    _tar(path, {"cifar-10-batches-py/test_batch": _pickle(Evil()),
                "cifar-10-batches-py/batches.meta": meta})  # fmt: skip
    with pytest.raises(DataFileError, match="not allowed"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)
    bad = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}
    _tar(path, {"cifar-10-batches-py/test_batch": _pickle(bad),
                "cifar-10-batches-py/batches.meta": meta})  # fmt: skip
    with pytest.raises(DataFileError, match=r"labels span \[0, 10\]"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)
    short = {"data": np.zeros((2, 1024), np.uint8), "labels": [0, 1]}
    _tar(path, {"cifar-10-batches-py/test_batch": _pickle(short),
                "cifar-10-batches-py/batches.meta": meta})  # fmt: skip
    with pytest.raises(DataFileError, match="3072"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)


def test_cifar_checksum_is_checked_for_users(tmp_path: Path) -> None:
    _cifar10(tmp_path)  # a well-formed archive, but not the upstream bytes
    with pytest.raises(DataFileError, match="corrupt or truncated.*sha256"):
        load_images("cifar10", "test", data_dir=tmp_path, download=False)


def test_cifar_missing_downloads_from_upstream(tmp_path: Path, no_shared, monkeypatch) -> None:
    calls: list[str] = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    with pytest.raises(DataFileError, match="download failed") as info:
        load_images("cifar10", "test", data_dir=tmp_path)
    assert calls == [MIRRORS["cifar10"][0] + "cifar-10-python.tar.gz"]
    assert CIFAR10.files["cifar-10-python.tar.gz"].sha256 in str(info.value)


def _svhn(path: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
    y[0, 0] = 10
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"X": x, "y": y})
    return x, y


def test_svhn_layout_and_labels(tmp_path: Path, unverified) -> None:
    unverified("svhn")
    x, y = _svhn(tmp_path / "svhn" / "test_32x32.mat", 6)
    data = load_images("svhn", "test", data_dir=tmp_path, download=False)
    assert data.images.shape == (6, 3, 32, 32) and data.num_classes == 10
    assert data.images[4, 2, 7, 30] * 255 == float(x[7, 30, 2, 4])  # X[h, w, c, n]
    assert torch.equal(data.images * 255, torch.from_numpy(x.transpose(3, 2, 0, 1)).float())
    assert data.labels[0] == 0 and data.labels.tolist() == (y[:, 0] % 10).tolist()
    assert len(load_images("svhn", "test", data_dir=tmp_path, download=False, limit=2)) == 2


def test_svhn_corrupt_and_checksum(tmp_path: Path, unverified) -> None:
    path = tmp_path / "svhn" / "train_32x32.mat"
    _svhn(path, 3)
    with pytest.raises(DataFileError, match="corrupt or truncated.*md5"):
        load_images("svhn", "train", data_dir=tmp_path, download=False)
    unverified("svhn")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataFileError, match="truncated or corrupt"):
        load_images("svhn", "train", data_dir=tmp_path, download=False)
    from scipy.io import savemat

    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])})
    with pytest.raises(DataFileError, match="expected 1..10"):
        load_images("svhn", "train", data_dir=tmp_path, download=False)
