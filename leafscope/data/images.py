""":func:`load_images`: one entry point for built-in and user data sets, at their own shape."""

from __future__ import annotations

import os
from pathlib import Path

from leafscope.data import builtin, registry, user
from leafscope.data.dataset import ImageDataset
from leafscope.data.transforms import apply_transforms
from leafscope.errors import DataFileError, InputError

SPLITS = ("train", "test")
USER_PREFIXES = ("npz:", "npy:", "csv:", "folder:", "idx:")


def load_images(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    limit: int | None = None,
    seed: int = 0,
    grey: bool = False,
    resize: tuple[int, int] | str | None = None,
    label_column: str | None = "label",
    layout: str = "auto",
) -> ImageDataset:
    """Load a data set at its own shape: images (N, C, H, W) in [0, 1] or vectors (N, D).

    Nothing is converted to grey or resized unless asked (``grey``, ``resize``); what was done
    is recorded in the result's ``transforms``.

    Args:
        name: built-in ``mnist``, ``fashion-mnist`` (``fashion_mnist``, ``fmnist``), ``kmnist``,
            ``emnist-letters`` (all (N, 1, 28, 28)), ``cifar10``, ``cifar100``,
            ``cifar100-coarse``, ``svhn`` (all (N, 3, 32, 32)), ``digits`` (sklearn 8x8 digits
            upsampled to 28x28), ``noise`` ((N, 1, 28, 28) uniform); or a user set: a path to an
            ``.npz`` / ``.npy`` (any shape: (N, D) vectors, (N, H, W), (N, C, H, W) or
            (N, H, W, C) images), a ``.csv`` (vectors, label column ``label_column``), a folder
            of image files (sub-folder = class), an IDX images file; or ``npz:PATH``,
            ``npy:PATH``, ``csv:PATH``, ``folder:PATH``, ``idx:PATH``.
        split: ``"train"`` or ``"test"``.
        data_dir: folder searched first for data files (see :func:`data_search_path`).
        download: fetch missing files of built-in sets from their upstream mirrors (verified).
        limit: keep only the first ``limit`` points (in order).
        seed: seed of generated data (``noise``) and of the ``digits`` train/test split.
        grey: convert images to one channel by ITU-R 601 luma (:func:`transforms.to_grey`).
        resize: ``(H, W)`` or ``"H,W"``: resize images bilinearly (:func:`transforms.resize`).
        label_column: label column of a CSV (None or ``"none"``: unlabelled).
        layout: channel axis of 4-D arrays in npz / npy files: ``auto``, ``nchw`` or ``nhwc``.

    Returns:
        An :class:`ImageDataset` (labels int64 (N,), -1 unlabelled).

    Raises:
        InputError: unknown name or split, bad limit, unusable user arrays, or grey / resize
            asked of vectors.
        DataFileError: missing, corrupt or undecodable files.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use 'train' or 'test'")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputError(f"limit must be a non-negative integer or None, got {limit!r}")
    options = {"label_column": label_column, "layout": layout, "size": resize}
    data = _load_raw(name, split, data_dir, download, limit, seed, options)
    size = None if options.get("resized") else resize  # folders resize while reading
    return apply_transforms(data, grey=grey, size=size)


def _load_raw(
    name: str, split: str, data_dir, download: bool, limit, seed: int, options: dict
) -> ImageDataset:
    lowered = name.lower()
    for prefix in USER_PREFIXES:
        if lowered.startswith(prefix):
            path = Path(name[len(prefix) :]).expanduser()
            return _load_user(path, prefix[:-1], split, limit, options)
    key = registry.canonical_name(name)
    if key == "digits":
        return builtin.load_digits_set(split, seed=seed, limit=limit)
    if key == "noise":
        return builtin.load_noise_set(split, seed=seed, limit=limit)
    if key in registry.IDX_KEYS:
        return builtin.load_idx_set(key, split, data_dir=data_dir, download=download, limit=limit)
    if key in ("cifar10", "cifar100", "cifar100-coarse"):
        from leafscope.data.cifar import load_cifar_set

        return load_cifar_set(key, split, data_dir=data_dir, download=download, limit=limit)
    if key == "svhn":
        from leafscope.data.svhn import load_svhn_set

        return load_svhn_set(split, data_dir=data_dir, download=download, limit=limit)
    path = Path(name).expanduser()
    if path.exists():
        return _load_user(path, _guess_kind(path), split, limit, options)
    raise InputError(
        f"unknown dataset {name!r}: use one of {', '.join(registry.BUILTIN_IMAGE_NAMES)}, "
        "or an existing path / " + " / ".join(f"{p}PATH" for p in USER_PREFIXES)
    )


def _guess_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy", ".csv"):
        return suffix[1:]
    if "ubyte" in path.name or "idx" in path.name:
        return "idx"
    raise InputError(
        f"cannot tell the format of {path}: give a folder of images, an .npz, .npy or .csv file, "
        "or an IDX file (or prefix the path with npz:, npy:, csv:, folder: or idx:)"
    )


def _load_user(path: Path, kind: str, split: str, limit: int | None, options: dict) -> ImageDataset:
    if kind == "folder":
        if not path.is_dir():
            raise DataFileError(f"folder {path} does not exist: give a folder of image files")
        options["resized"] = options["size"] is not None
        return user.load_folder_set(path, split, limit, size=options["size"])
    if not path.is_file():
        raise DataFileError(f"{kind} file {path} does not exist: check the path")
    if kind == "npz":
        return user.load_npz_set(path, split, limit, layout=options["layout"])
    if kind == "npy":
        return user.load_npy_set(path, split, limit, layout=options["layout"])
    if kind == "csv":
        from leafscope.data.tabular import load_csv_set

        return load_csv_set(path, split, limit, label_column=options["label_column"])
    return user.load_idx_user_set(path, split, limit)
