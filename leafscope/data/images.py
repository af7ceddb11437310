""":func:`load_images`: one entry point for built-in and user image sets."""

from __future__ import annotations

import os
from pathlib import Path

from leafscope.data import builtin, registry, user
from leafscope.data.dataset import ImageDataset
from leafscope.errors import DataFileError, InputError

SPLITS = ("train", "test")
USER_PREFIXES = ("npz:", "folder:", "idx:")


def load_images(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    limit: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load an image set as grey 28x28 images in [0, 1].

    Args:
        name: ``mnist``, ``fashion-mnist`` (``fashion_mnist``, ``fmnist``), ``kmnist``,
            ``emnist-letters``, ``digits``, ``noise``; or a user set: a path to an ``.npz``, a
            folder of image files (sub-folder = class), an IDX images file, or ``npz:PATH`` /
            ``folder:PATH`` / ``idx:PATH``.
        split: ``"train"`` or ``"test"``.
        data_dir: folder searched first for data files (see :func:`data_search_path`).
        download: fetch missing files of built-in sets from their upstream mirrors (verified).
        limit: keep only the first ``limit`` points (in order).
        seed: seed of generated data (``noise``) and of the ``digits`` train/test split.

    Returns:
        An :class:`ImageDataset` (images float32 (N, 1, 28, 28), labels int64 (N,), -1 unlabelled).

    Raises:
        InputError: unknown name or split, bad limit, or unusable user arrays.
        DataFileError: missing, corrupt or undecodable files.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use 'train' or 'test'")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputError(f"limit must be a non-negative integer or None, got {limit!r}")
    lowered = name.lower()
    for prefix in USER_PREFIXES:
        if lowered.startswith(prefix):
            return _load_user(Path(name[len(prefix) :]).expanduser(), prefix[:-1], split, limit)
    key = registry.canonical_name(name)
    if key == "digits":
        return builtin.load_digits_set(split, seed=seed, limit=limit)
    if key == "noise":
        return builtin.load_noise_set(split, seed=seed, limit=limit)
    if key in registry.IMAGE_DATASETS:
        return builtin.load_idx_set(key, split, data_dir=data_dir, download=download, limit=limit)
    path = Path(name).expanduser()
    if path.exists():
        return _load_user(path, _guess_kind(path), split, limit)
    raise InputError(
        f"unknown dataset {name!r}: use one of {', '.join(registry.BUILTIN_IMAGE_NAMES)}, "
        "or an existing path / npz:PATH / folder:PATH / idx:PATH"
    )


def _guess_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if path.suffix.lower() == ".npz":
        return "npz"
    if "ubyte" in path.name or "idx" in path.name:
        return "idx"
    raise InputError(
        f"cannot tell the format of {path}: give a folder of images, an .npz, or an IDX file "
        "(or prefix the path with npz:, folder: or idx:)"
    )


def _load_user(path: Path, kind: str, split: str, limit: int | None) -> ImageDataset:
    if kind == "folder":
        if not path.is_dir():
            raise DataFileError(f"folder {path} does not exist: give a folder of image files")
        return user.load_folder_set(path, split, limit)
    if not path.is_file():
        raise DataFileError(f"{kind} file {path} does not exist: check the path")
    if kind == "npz":
        return user.load_npz_set(path, split, limit)
    return user.load_idx_user_set(path, split, limit)
