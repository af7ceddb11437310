"""digits, noise, train/val splits and point specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from leafscope.data import load_images, load_point, noise_like, parse_point_spec, train_val_split
from leafscope.errors import InputError


def test_digits_split_range_shape() -> None:
    from sklearn.datasets import load_digits

    train, test = load_images("digits", "train"), load_images("digits", "test")
    assert train.images.shape == (1438, 1, 28, 28) and test.images.shape == (359, 1, 28, 28)
    for data in (train, test):
        assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert float(train.images.max()) > 0.95
    all_counts = torch.bincount(torch.cat([train.labels, test.labels]), minlength=10)
    assert all_counts.tolist() == torch.bincount(torch.from_numpy(load_digits().target)).tolist()
    again = load_images("digits", "test")
    other = load_images("digits", "test", seed=1)
    assert torch.equal(again.images, test.images) and not torch.equal(other.labels, test.labels)


def test_digits_bilinear_preserves_mean_of_constant_blocks() -> None:
    # bilinear upsampling (align_corners=False) of an 8x8 image: the row/column averages of the
    # interior pixels follow the original; check the global mean within a small border effect.
    from sklearn.datasets import load_digits

    data = load_images("digits", "train", limit=200)
    assert abs(float(data.images.mean()) - float(load_digits().images.mean() / 16)) < 0.02


def test_noise_seeded() -> None:
    a, b = load_images("noise", "train"), load_images("noise", "train")
    assert len(a) == 10000 and len(load_images("noise", "test")) == 2000
    assert torch.equal(a.images, b.images)
    assert not torch.equal(load_images("noise", "train", seed=1).images[:1], a.images[:1])
    assert not torch.equal(load_images("noise", "test").images[:1], a.images[:1])
    assert abs(float(a.images.mean()) - 0.5) < 0.005  # uniform [0, 1)
    assert (a.labels == -1).all() and a.num_classes == 0
    assert torch.equal(load_images("noise", "train", limit=7).images, a.images[:7])
    like = noise_like(load_images("digits", "test"), seed=3)
    assert len(like) == 359 and torch.equal(like.images, noise_like(like, seed=3).images)


def test_train_val_split() -> None:
    train, val = train_val_split(103, 0.2, seed=5)
    assert len(val) == 21 and len(train) == 82
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(103))
    t2, v2 = train_val_split(103, 0.2, seed=5)
    assert torch.equal(train, t2) and torch.equal(val, v2)
    assert not torch.equal(val, train_val_split(103, 0.2, seed=6)[1])
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(InputError, match="val_fraction"):
            train_val_split(10, bad)


def test_parse_point_spec() -> None:
    assert parse_point_spec("mnist:test:17") == ("mnist", "test", 17)
    assert parse_point_spec("npz:/a/b.npz:train:3") == ("npz:/a/b.npz", "train", 3)
    for bad in ("mnist", "mnist:test", "mnist:val:1", "mnist:test:x", "mnist:test:-1", ":test:1"):
        with pytest.raises(InputError, match="mnist:test:17|train or test|integer"):
            parse_point_spec(bad)


def test_load_point(shared_data: Path) -> None:
    image, label = load_point("mnist:test:0")
    assert image.shape == (1, 28, 28) and label == 7
    assert load_point("mnist:train:0")[1] == 5
    with pytest.raises(InputError, match=r"0\.\.9999"):
        load_point("mnist:test:10000")


def test_load_point_generated() -> None:
    image, label = load_point("noise:test:5")
    assert label == -1 and torch.equal(image, load_images("noise", "test").images[5])
    with pytest.raises(InputError, match=r"0\.\.358"):
        load_point("digits:test:359")
