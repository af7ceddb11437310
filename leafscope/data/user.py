"""User image sets: ``.npz`` files, folders of image files, IDX files."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from leafscope.data.dataset import ImageDataset, to_unit_images
from leafscope.data.idx import read_idx
from leafscope.errors import DataFileError, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
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


def load_npz_set(path: Path, split: str, limit: int | None) -> ImageDataset:
    """Images from an npz.

    Keys: images ``x_{split}``/``x``/``images``/``arr_0``; labels ``y_{split}``/``y``/``labels``
    (or ``arr_1`` beside ``arr_0``).
    """
    arrays = read_npz_array(path)
    x_key = next((k for k in (f"x_{split}", *_X_KEYS) if k in arrays), None)
    if x_key is None:
        raise InputError(
            f"{path} has arrays {sorted(arrays)} but no images: name them x (or images, "
            f"x_{split}, arr_0)"
        )
    y_keys = (f"y_{split}", *_Y_KEYS, *(("arr_1",) if x_key == "arr_0" else ()))
    y_key = next((k for k in y_keys if k in arrays), None)
    images = arrays[x_key][:limit]
    labels = arrays[y_key][:limit] if y_key else None
    x, norm = to_unit_images(images, source=str(path))
    y, num_classes = labels_to_tensor(labels, len(x), str(path))
    return ImageDataset(x, y, str(path), split, num_classes, norm, source=f"{path} [{x_key}]")


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
    x, norm = to_unit_images(images, source=str(path))
    y, num_classes = labels_to_tensor(labels, len(x), str(label_path))
    return ImageDataset(x, y, str(path), split, num_classes, norm, source=str(path))


def load_folder_set(path: Path, split: str, limit: int | None) -> ImageDataset:
    """Image files in a folder (``path/split`` if it exists); sub-folder name = class.

    Integer sub-folder names are used as labels; other names are sorted and numbered (recorded in
    ``class_names``). Loose files directly in the folder are unlabelled (-1).
    """
    root = path / split if (path / split).is_dir() else path
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
    class_names = None
    if loose:
        entries = [(f, -1) for f in loose]
    else:
        names = [d.name for d in classes]
        numeric = all(n.lstrip("-").isdigit() and int(n) >= 0 for n in names)
        ids = [int(n) for n in names] if numeric else list(range(len(names)))
        class_names = None if numeric else names
        entries = [
            (f, label) for d, label in zip(classes, ids, strict=True) for f in _image_files(d)
        ]
    entries = entries[:limit]
    arrays, notes = [], set()
    for file, _ in entries:
        image, note = to_unit_images(_read_image(file)[None], source=str(file))
        arrays.append(image)
        notes.add(note)
    labels = np.array([label for _, label in entries], dtype=np.int64)
    y, num_classes = labels_to_tensor(None if loose else labels, len(arrays), str(root))
    return ImageDataset(
        torch.cat(arrays), y, str(path), split, num_classes, " | ".join(sorted(notes)),
        source=f"{root} ({len(entries)} image files)", class_names=class_names,
    )  # fmt: skip


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    )


def _read_image(path: Path) -> np.ndarray:
    """One image file as an (H, W) or (H, W, C) uint8 array (C = 2, 3 or 4), via Pillow."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "RGB", "RGBA", "LA"):
                img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
            return np.asarray(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataFileError(
            f"cannot decode image {path} ({type(exc).__name__}: {exc}): remove or re-save it "
            "as PNG/JPEG"
        ) from None
