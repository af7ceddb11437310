"""User data sets: ``.npz`` / ``.npy`` arrays, folders of image files (Pillow), IDX files.

Arrays keep their own shape: (N, D) are vectors, (N, H, W) grey images, (N, C, H, W) or
(N, H, W, C) images. Image files keep their channels (grey stays 1 channel, colour 3).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from leafscope.data.dataset import ImageDataset, to_data, to_unit_images
from leafscope.data.idx import read_idx
from leafscope.data.transforms import parse_size, resize
from leafscope.errors import DataFileError, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_X_KEYS = ("x", "images", "X", "arr_0")
_Y_KEYS = ("y", "labels", "Y")


def read_npz_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray | dict:
    """Read one array (``key``) or all arrays (``key=None``, a dict) of an ``.npz`` without pickle.

    Raises:
        DataFileError: unreadable / not an npz, object arrays, or ``key`` missing.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key is None:
                return {k: archive[k] for k in archive.files}
            if key not in archive.files:
                raise DataFileError(f"{path} has no array {key!r} (it has {archive.files})")
            return archive[key]
    except DataFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFileError(
            f"cannot read {path} as .npz ({type(exc).__name__}: {exc}): save the images with "
            "numpy.savez(path, x=images, y=labels) using plain (non-object) arrays"
        ) from None


def labels_to_tensor(labels: np.ndarray | None, n: int, source: str) -> tuple[torch.Tensor, int]:
    """Validate user labels (1-D integers >= -1, one per image).

    Returns:
        ``(labels int64 (n,), num_classes)``; all -1 and 0 classes when ``labels`` is None.
    """
    if labels is None:
        return torch.full((n,), -1, dtype=torch.int64), 0
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{source}: labels have shape {np.shape(labels)}, expected ({n},)")
    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < -1):
        raise InputError(
            f"{source}: labels must be integers >= 0 (-1 = unlabelled), got dtype {y.dtype}"
            + (f" with minimum {y.min()}" if len(y) and np.issubdtype(y.dtype, np.number) else "")
        )
    y = y.astype(np.int64)
    return torch.from_numpy(y), int(y.max()) + 1 if len(y) else 0


def load_npz_set(path: Path, split: str, limit: int | None, layout: str = "auto") -> ImageDataset:
    """Images or vectors from an npz, at their own shape (see :func:`~leafscope.data.to_data`).

    Keys: data ``x_{split}``/``x``/``images``/``arr_0``; labels ``y_{split}``/``y``/``labels``
    (or ``arr_1`` beside ``arr_0``).
    """
    arrays = read_npz_array(path)
    x_key = next((k for k in (f"x_{split}", *_X_KEYS) if k in arrays), None)
    if x_key is None:
        raise InputError(
            f"{path} has arrays {sorted(arrays)} but no data: name them x (or images, "
            f"x_{split}, arr_0)"
        )
    y_keys = (f"y_{split}", *_Y_KEYS, *(("arr_1",) if x_key == "arr_0" else ()))
    y_key = next((k for k in y_keys if k in arrays), None)
    images = arrays[x_key][:limit]
    labels = arrays[y_key][:limit] if y_key else None
    x, norm = to_data(images, source=str(path), layout=layout)
    y, num_classes = labels_to_tensor(labels, len(x), str(path))
    return ImageDataset(x, y, str(path), split, num_classes, norm, source=f"{path} [{x_key}]")


def load_npy_set(path: Path, split: str, limit: int | None, layout: str = "auto") -> ImageDataset:
    """One unlabelled array from an ``.npy`` (read without pickle), at its own shape."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(
            f"cannot read {path} as .npy ({type(exc).__name__}: {exc}): save it with "
            "numpy.save(path, array) using a plain (non-object) array"
        ) from None
    x, norm = to_data(np.asarray(array[:limit]), source=str(path), layout=layout)
    y, _ = labels_to_tensor(None, len(x), str(path))
    return ImageDataset(x, y, str(path), split, 0, norm, source=str(path))


def load_idx_user_set(path: Path, split: str, limit: int | None) -> ImageDataset:
    """An IDX images file; labels from the sibling file with ``images-idx3`` -> ``labels-idx1``."""
    images = read_idx(path)[:limit]
    label_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    labels = None
    if label_path != path and label_path.is_file():
        labels = read_idx(label_path)
        if len(labels) != len(read_idx(path)):
            raise DataFileError(
                f"{label_path} has {len(labels)} labels for {len(read_idx(path))} images in "
                f"{path}: use matching files"
            )
        labels = labels[:limit]
    x, norm = to_data(images, source=str(path))
    y, num_classes = labels_to_tensor(labels, len(x), str(label_path))
    return ImageDataset(x, y, str(path), split, num_classes, norm, source=str(path))


def _folder_entries(root: Path) -> tuple[list[tuple[Path, int]], list[str] | None, bool]:
    """``(file, label)`` pairs, the class names (None when numeric) and whether unlabelled."""
    loose = _image_files(root)
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [d for d in classes if _image_files(d)]
    if loose and classes:
        raise InputError(
            f"{root} holds both image files and class sub-folders: move the loose files into a "
            "class folder (or into a separate folder)"
        )
    if not loose and not classes:
        raise InputError(f"{root} contains no image files ({', '.join(IMAGE_SUFFIXES)})")
    if loose:
        return [(f, -1) for f in loose], None, True
    names = [d.name for d in classes]
    numeric = all(n.lstrip("-").isdigit() and int(n) >= 0 for n in names)
    ids = [int(n) for n in names] if numeric else list(range(len(names)))
    entries = [(f, label) for d, label in zip(classes, ids, strict=True) for f in _image_files(d)]
    return entries, None if numeric else names, False


def load_folder_set(
    path: Path, split: str, limit: int | None, size: tuple[int, int] | str | None = None
) -> ImageDataset:
    """Image files in a folder (``path/split`` if it exists); sub-folder name = class.

    Integer sub-folder names are used as labels; other names are sorted and numbered (recorded in
    ``class_names``). Loose files directly in the folder are unlabelled (-1). Grey files stay one
    channel and colour files three; a folder mixing both gets the grey files repeated to three
    channels (recorded in ``transforms``). Files of different sizes need ``size``.

    Args:
        path: the folder.
        split: ``path/split`` is used when it exists.
        limit: keep the first ``limit`` files (class order, then file name).
        size: ``(H, W)``: resize every image to it (bilinear, antialiased when shrinking).

    Raises:
        InputError: no images, loose files beside class folders, or mixed sizes without ``size``.
        DataFileError: a file Pillow cannot decode.
    """
    root = path / split if (path / split).is_dir() else path
    entries, class_names, unlabelled = _folder_entries(root)
    entries = entries[:limit]
    read = [_read_image(file) for file, _ in entries]
    notes = sorted({note for _, note in read if note})
    colour = any(a.ndim == 3 for a, _ in read)
    if colour and any(a.ndim == 2 for a, _ in read):
        read = [(np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a, n) for a, n in read]
        notes.append("grey files repeated to 3 channels to match the colour files")
    shapes = {a.shape[:2]: file for (a, _), (file, _) in zip(read, entries, strict=True)}
    target = parse_size(size) if size is not None else None
    if target is None and len(shapes) > 1:
        (s1, f1), (s2, f2) = list(shapes.items())[:2]
        raise InputError(
            f"images in {root} have different sizes ({s1[0]}x{s1[1]} in {f1.name}, {s2[0]}x{s2[1]}"
            f" in {f2.name}): pass --resize H,W (size=(H, W)) to bring them to one size"
        )
    tensors, norms = [], set()
    for array, _ in read:
        x, norm = to_unit_images(array[None], source=str(root), layout="nhwc")
        tensors.append(resize(x, target) if target is not None else x)
        norms.add(norm)
    if target is not None:
        sizes = ", ".join(f"{h}x{w}" for h, w in sorted(shapes))
        h, w = target
        notes.append(f"resize: {sizes} -> {h}x{w} (bilinear, antialiased when shrinking)")
    labels = np.array([label for _, label in entries], dtype=np.int64)
    y, num_classes = labels_to_tensor(None if unlabelled else labels, len(tensors), str(root))
    return ImageDataset(
        torch.cat(tensors), y, str(path), split, num_classes, " | ".join(sorted(norms)),
        source=f"{root} ({len(entries)} image files)", class_names=class_names, transforms=notes,
    )  # fmt: skip


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    )


def _read_image(path: Path) -> tuple[np.ndarray, str | None]:
    """One image file via Pillow: (H, W) grey or (H, W, 3) RGB, and what was changed (or None).

    Grey (L) and RGB are read as stored; alpha is dropped (LA -> L, RGBA -> RGB); 16-bit grey
    becomes floats /65535; palette and other modes are converted to RGB.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("L", "RGB"):
                return np.asarray(img), None
            if mode == "1":
                return np.asarray(img.convert("L")), None
            if mode == "LA":
                return np.asarray(img.getchannel("L")), "alpha channel dropped"
            if mode.startswith("I;16"):
                grey = np.asarray(img).astype(np.float32) / np.float32(65535)
                return grey, "16-bit grey values/65535"
            if mode == "RGBA":
                return np.asarray(img.convert("RGB")), "alpha channel dropped"
            if mode == "P":
                return np.asarray(img.convert("RGB")), None
            return np.asarray(img.convert("RGB")), f"{mode} images converted to RGB"
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataFileError(
            f"cannot decode image {path} ({type(exc).__name__}: {exc}): remove or re-save it "
            "as PNG/JPEG"
        ) from None
