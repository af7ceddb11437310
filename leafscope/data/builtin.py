"""Built-in image sets: IDX-based (MNIST, Fashion-MNIST, KMNIST, EMNIST Letters), digits, noise.

CIFAR-10/100 and SVHN live in :mod:`leafscope.data.cifar` and :mod:`leafscope.data.svhn`.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from leafscope.data import registry
from leafscope.data.dataset import IMAGE_SIZE, PIXELS_255, ImageDataset
from leafscope.data.idx import read_idx
from leafscope.data.pointsets import NOISE_NORMALIZATION, ArrayPointSet, NoisePointSet
from leafscope.data.search import candidate_dirs, find_file, locate
from leafscope.data.spec import PointSet
from leafscope.errors import DataFileError

NOISE_SIZES = {"train": 10000, "test": 2000}
DIGITS_TRAIN_FRACTION = 0.8


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def open_idx_set(
    key: str, split: str, *, data_dir: str | os.PathLike | None, download: bool
) -> PointSet:
    """A registered IDX image set (see :mod:`leafscope.data.registry`): its uint8 images kept
    as read (cached per file), converted to floats a batch at a time."""
    spec = registry.IMAGE_DATASETS[key]
    img_name, lab_name = spec.splits[split]
    if key == "kmnist":
        npz = _kmnist_npz(split, data_dir)
        if npz is not None and find_file(img_name, candidate_dirs(spec, data_dir)) is None:
            return npz
    img_path = locate(spec, img_name, data_dir=data_dir, download=download)
    lab_path = locate(spec, lab_name, data_dir=data_dir, download=download)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if key == "emnist-letters":  # stored transposed, labels 1..26
        images, labels = images.transpose(0, 2, 1), labels.astype(np.int64) - 1
    _check_pair(images, labels, spec.num_classes, f"{img_path} / {lab_path}")
    return ArrayPointSet(
        images,
        torch.from_numpy(labels.astype(np.int64)),
        name=spec.key,
        split=split,
        source=f"{img_path}, {lab_path}",
        num_classes=spec.num_classes,
        class_names=list(spec.class_names) if spec.class_names else None,
        normalization=PIXELS_255,
    )


def _check_pair(images: np.ndarray, labels: np.ndarray, num_classes: int, source: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8:
        raise DataFileError(
            f"{source}: images have shape {images.shape} dtype {images.dtype}, expected "
            "(N, 28, 28) uint8: replace the file with the upstream one"
        )
    if labels.shape != (len(images),):
        raise DataFileError(
            f"{source}: {labels.shape} labels for {len(images)} images: the images and labels "
            "files do not belong together; replace them with the upstream files"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataFileError(
            f"{source}: labels span [{labels.min()}, {labels.max()}], expected "
            f"0..{num_classes - 1}: replace the file with the upstream one"
        )


def _kmnist_npz(split: str, data_dir) -> PointSet | None:
    """KMNIST's upstream npz pair ``kmnist-{split}-imgs.npz`` / ``-labels.npz`` if found."""
    dirs = candidate_dirs(registry.KMNIST, data_dir)
    img = find_file(f"kmnist-{split}-imgs.npz", dirs)
    lab = find_file(f"kmnist-{split}-labels.npz", dirs)
    if img is None or lab is None:
        return None
    from leafscope.data.user import npz_member, read_npz_array

    images, labels = npz_member(img, "arr_0"), read_npz_array(lab, "arr_0")
    _check_pair(images, labels, 10, f"{img} / {lab}")
    return ArrayPointSet(
        images,
        torch.from_numpy(labels.astype(np.int64)),
        name="kmnist",
        split=split,
        source=f"{img}, {lab} (npz, no checksum known)",
        num_classes=10,
        normalization=PIXELS_255,
    )


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def open_digits(split: str, *, seed: int) -> PointSet:
    """scikit-learn digits (1797 8x8 images, values 0..16) /16, upsampled to 28x28 bilinearly
    (1.8 MB in all, kept in memory).

    This built-in set is defined at 28x28 (an MNIST-sized stand-in); the upsampling is recorded in
    ``transforms``. scikit-learn has no split: a seeded permutation puts 80% in train and 20% in
    test (each split keeps the original order).
    """
    images, target = _digits_arrays()
    n_all = len(target)
    perm = torch.randperm(n_all, generator=_generator(seed))
    n_train = int(round(DIGITS_TRAIN_FRACTION * n_all))
    index = (perm[:n_train] if split == "train" else perm[n_train:]).sort().values
    small = torch.from_numpy(images[index.numpy()] / 16.0).float().unsqueeze(1)
    x = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return ArrayPointSet(
        x.clamp_(0.0, 1.0).numpy(),
        torch.from_numpy(target[index.numpy()].astype(np.int64)),
        name="digits",
        split=split,
        source=f"sklearn.datasets.load_digits, seeded 80/20 split (seed {seed})",
        num_classes=10,
        normalization=(
            "values/16, range [0,1], 8x8 resized to 28x28 (bilinear), no mean/std normalisation"
        ),
        transforms=["resize: 8x8 -> 28x28 (bilinear)"],
        ready=True,
    )


def open_noise(split: str, *, seed: int, input_shape: tuple[int, ...] | None = None) -> PointSet:
    """Uniform [0, 1) noise points (10000 train / 2000 test), of ``input_shape`` (default
    MNIST's (1, 28, 28)); point ``i`` of a split is drawn from its own seed (see
    :class:`leafscope.data.pointsets.NoisePointSet`). Labels are all -1."""
    shape = tuple(input_shape) if input_shape else (1, IMAGE_SIZE, IMAGE_SIZE)
    stream = 0 if split == "train" else 1
    return NoisePointSet(NOISE_SIZES[split], shape, seed=seed, split=split, stream=stream)


def noise_like(dataset: ImageDataset, seed: int = 0) -> ImageDataset:
    """Uniform [0, 1) noise with the size, point shape and split of ``dataset`` (labels -1).

    Args:
        dataset: the set to mimic (only its length, point shape and split are used).
        seed: generator seed.

    Returns:
        An ImageDataset of len(dataset) noise points, each of shape ``dataset.input_shape``.
    """
    x = torch.rand(len(dataset), *dataset.input_shape, generator=_generator(seed))
    return _noise(x, dataset.split, f"torch.rand uniform [0,1) like {dataset.name}, seed {seed}")


def _noise(x: torch.Tensor, split: str, source: str) -> ImageDataset:
    return ImageDataset(
        images=x,
        labels=torch.full((len(x),), -1, dtype=torch.int64),
        name="noise",
        split=split,
        num_classes=0,
        normalization=NOISE_NORMALIZATION,
        source=source,
    )
