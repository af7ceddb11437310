"""User data sets (npz, folders, KMNIST npz) at their own shape, and the [0, 1] conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.data import load_images, to_unit_images
from leafscope.errors import DataFileError, InputError


def test_npz_uint8_with_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    y = np.array([0, 4, 2, 2, 1])
    np.savez(tmp_path / "set.npz", x=x, y=y)
    data = load_images(str(tmp_path / "set.npz"), "all", limit=4)
    assert torch.allclose(data.images[:, 0], torch.from_numpy(x[:4]).float() / 255)
    assert data.labels.tolist() == [0, 4, 2, 2] and data.num_classes == 5
    assert "pixels/255" in data.normalization


def test_npz_rgb_kept_then_grey_resized_on_request(tmp_path: Path) -> None:
    colour = np.array([0.2, 0.6, 1.0], dtype=np.float32)
    x = np.broadcast_to(colour, (2, 32, 32, 3)).copy()
    np.savez(tmp_path / "rgb.npz", images=x)
    kept = load_images("npz:" + str(tmp_path / "rgb.npz"), "all")
    assert kept.images.shape == (2, 3, 32, 32) and kept.transforms == []
    assert torch.equal(kept.images, torch.from_numpy(np.moveaxis(x, -1, 1)))
    data = load_images("npz:" + str(tmp_path / "rgb.npz"), "all", grey=True, resize=(28, 28))
    luma = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0  # constant image stays constant
    assert data.images.shape == (2, 1, 28, 28)
    assert torch.allclose(data.images, torch.full_like(data.images, luma), atol=1e-6)
    assert "grey" in data.transforms[0] and "32x32 -> 28x28" in data.transforms[1]
    assert data.describe()["transforms"] == data.transforms
    assert data.labels.tolist() == [-1, -1] and data.num_classes == 0


def test_npz_split_keys_and_arr0(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", x_train=np.zeros((3, 28, 28), np.uint8),
             x_test=np.ones((2, 28, 28), np.uint8) * 255, y_test=np.array([1, 0]))  # fmt: skip
    assert len(load_images(str(tmp_path / "s.npz"), "train")) == 3
    test = load_images(str(tmp_path / "s.npz"), "test")
    assert float(test.images.min()) == 1.0 and test.labels.tolist() == [1, 0]
    np.savez(tmp_path / "a.npz", np.zeros((2, 784), np.uint8), np.array([3, 1]))
    flat = load_images(str(tmp_path / "a.npz"), "all")  # (N, D) stays vectors
    assert flat.images.shape == (2, 784) and flat.labels.tolist() == [3, 1]
    assert not flat.is_image and flat.describe()["kind"] == "vectors"


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.full((2, 28, 28), 3.5))
    with pytest.raises(InputError, match=r"\[3.5, 3.5\]"):
        load_images(str(tmp_path / "bad.npz"), "all")
    np.savez(tmp_path / "nox.npz", foo=np.zeros(3))
    with pytest.raises(InputError, match="foo"):
        load_images(str(tmp_path / "nox.npz"), "all")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFileError, match="junk.npz"):
        load_images(str(tmp_path / "junk.npz"), "all")
    with pytest.raises(DataFileError, match="does not exist"):
        load_images("npz:" + str(tmp_path / "missing.npz"), "all")


def test_to_unit_images_checks() -> None:
    with pytest.raises(InputError, match="0..255"):
        to_unit_images(np.full((1, 28, 28), 300, dtype=np.int32))
    bad = np.zeros((3, 28, 28), np.float32)
    bad[2, 5, 5] = np.nan
    with pytest.raises(InputError, match="image 2"):
        to_unit_images(bad)
    ints, note = to_unit_images(np.full((1, 28, 28), 51, dtype=np.int64))
    assert torch.allclose(ints, torch.full_like(ints, 0.2)) and "/255" in note


def _png(path: Path, value: int, size: int = 28, mode: str = "L") -> None:
    from PIL import Image

    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(path)


def test_folder_numeric_classes(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    for label, value in ((0, 10), (3, 200)):
        (tmp_path / str(label)).mkdir()
        for i in range(2):
            _png(tmp_path / str(label) / f"{i}.png", value + i)
    data = load_images(str(tmp_path), "all")
    assert data.labels.tolist() == [0, 0, 3, 3] and data.num_classes == 4
    means = data.images.mean(dim=(1, 2, 3)) * 255
    assert torch.allclose(means, torch.tensor([10.0, 11.0, 200.0, 201.0]), atol=1e-3)


def test_folder_named_classes_split_and_rgb(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    for name in ("dog", "cat"):
        (tmp_path / "test" / name).mkdir(parents=True)
        _png(tmp_path / "test" / name / "a.jpg", 128, size=40, mode="RGB")
    data = load_images("folder:" + str(tmp_path), "test")
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [0, 1]
    assert data.images.shape == (2, 3, 40, 40) and data.transforms == []  # RGB kept
    assert abs(float(data.images.mean()) - 128 / 255) < 0.02  # JPEG is lossy
    small = load_images("folder:" + str(tmp_path), "test", resize="28,28")
    assert small.images.shape == (2, 3, 28, 28) and "40x40 -> 28x28" in small.transforms[0]
    grey = load_images("folder:" + str(tmp_path), "test", grey=True)
    assert grey.images.shape == (2, 1, 40, 40) and "luma" in grey.transforms[0]


def test_kmnist_npz_found_in_data_dir(tmp_path: Path) -> None:
    folder = tmp_path / "kmnist"
    folder.mkdir()
    x = np.arange(3 * 784).reshape(3, 28, 28).astype(np.uint8)
    np.savez(folder / "kmnist-test-imgs.npz", x)
    np.savez(folder / "kmnist-test-labels.npz", np.array([9, 0, 5], dtype=np.uint8))
    data = load_images("kmnist", "test", data_dir=tmp_path, download=False)
    assert data.labels.tolist() == [9, 0, 5] and data.name == "kmnist"
    assert torch.allclose(data.images[:, 0], torch.from_numpy(x).float() / 255)
