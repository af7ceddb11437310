"""MNIST / Fashion-MNIST from the shared IDX files: shapes, values, labels, checksums, errors."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.data import file_digest, load_images, read_idx
from leafscope.errors import DataFileError, InputError


def test_mnist_train_matches_published_stats(shared_data: Path) -> None:
    data = load_images("mnist", "train")
    assert data.images.shape == (60000, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.labels.dtype == torch.int64
    assert data.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert float(data.images.min()) == 0.0 and float(data.images.max()) == 1.0
    # mean pixel 0.1307 (= 33.32 / 255), the usual normalisation constant
    assert abs(float(data.images.mean()) - 0.1307) < 5e-4
    counts = torch.bincount(data.labels, minlength=10)
    assert int(counts.min()) == 5421 and int(counts.max()) == 6742
    # pixels are exactly k/255
    scaled = data.images[:100] * 255
    assert torch.equal(scaled, scaled.round())
    assert data.num_classes == 10 and "255" in data.normalization


def test_mnist_test_and_limit(shared_data: Path) -> None:
    full = load_images("mnist", "test")
    assert len(full) == 10000 and int(full.labels[0]) == 7
    part = load_images("mnist", "test", limit=50)
    assert len(part) == 50
    assert torch.equal(part.images, full.images[:50]) and torch.equal(part.labels, full.labels[:50])
    json.dumps(part.describe())
    sub = full.subset([3, 1])
    assert torch.equal(sub.images[1], full.images[1]) and sub.name == "mnist"
    mask = full.labels == 7
    assert len(full.subset(mask)) == int(mask.sum()) and (full.subset(mask).labels == 7).all()
    with pytest.raises(InputError, match="10000 points"):
        full.subset([10000])


@pytest.mark.parametrize("alias", ["fashion-mnist", "fashion_mnist", "fmnist"])
def test_fashion_aliases_and_stats(shared_data: Path, alias: str) -> None:
    data = load_images(alias, "test")
    assert data.name == "fashion-mnist" and len(data) == 10000
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    assert data.class_names is not None and data.class_names[9] == "Ankle boot"


def test_fashion_train_mean(shared_data: Path) -> None:
    data = load_images("fashion-mnist", "train")
    assert len(data) == 60000 and torch.bincount(data.labels).tolist() == [6000] * 10
    assert abs(float(data.images.mean()) - 0.2860) < 5e-4


def test_shared_checksums(shared_data: Path) -> None:
    lines = (shared_data / "SHA256SUMS").read_text().split("\n")
    entries = [line.split() for line in lines if line.strip()]
    assert len(entries) >= 24
    for digest, name in entries:
        assert file_digest(shared_data / name) == digest, name


def test_truncated_file_names_expected_checksum(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    good = (shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(good[:2000])
    with pytest.raises(DataFileError) as info:
        load_images("mnist", "test", data_dir=tmp_path)
    msg = str(info.value)
    assert "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6" in msg
    assert str(bad) in msg and "delete" in msg


def test_garbage_gzip_is_a_data_file_error(tmp_path: Path) -> None:
    path = tmp_path / "my-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(DataFileError) as info:
        load_images(str(path), "all")
    assert type(info.value) is DataFileError and info.value.__suppress_context__
    assert str(path) in str(info.value)


def test_idx_header_inconsistent_with_size(tmp_path: Path) -> None:
    header = bytes([0, 0, 8, 3]) + np.array([10, 28, 28], ">u4").tobytes()
    path = tmp_path / "short-images-idx3-ubyte"
    path.write_bytes(header + bytes(9 * 28 * 28))  # header says 10 images, data holds 9
    with pytest.raises(DataFileError, match=r"\(10, 28, 28\)"):
        read_idx(path)
    path.write_bytes(b"\x00\x01\x02\x03abcd")
    with pytest.raises(DataFileError, match="not an IDX file"):
        read_idx(path)


def test_user_idx_pair_round_trip(tmp_path: Path) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    header = bytes([0, 0, 8, 3]) + np.array([3, 28, 28], ">u4").tobytes()
    with gzip.open(tmp_path / "set-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(header + images.astype(np.uint8).tobytes())
    labels = bytes([0, 0, 8, 1]) + np.array([3], ">u4").tobytes() + bytes([2, 0, 1])
    (tmp_path / "set-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    data = load_images("idx:" + str(tmp_path / "set-images-idx3-ubyte.gz"), "all")
    assert torch.allclose(data.images[:, 0], torch.from_numpy(images).float() / 255)
    assert data.labels.tolist() == [2, 0, 1] and data.num_classes == 3


def test_torchvision_layout_found(shared_data: Path, tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist" / name, raw / name)
    data = load_images("mnist", "test", data_dir=tmp_path, limit=2)
    assert str(raw) in data.source


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="split"):
        load_images("mnist", "val")
    with pytest.raises(InputError, match="unknown dataset 'cifar-11'"):
        load_images("cifar-11")
    with pytest.raises(InputError, match="limit"):
        load_images("noise", limit=-1)
