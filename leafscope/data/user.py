"""User data sets, opened as point sets: ``.npz`` / ``.npy`` arrays (memory-mapped where
stored uncompressed), folders of image files (Pillow, decoded a batch at a time), IDX files.

Arrays keep their own shape: (N, D) are vectors, (N, H, W) grey images, (N, C, H, W) or
(N, H, W, C) images. Image files keep their channels (grey stays 1 channel, colour 3).
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.data.dataset import FLOAT_KEPT, PIXELS_255, to_unit_images
from leafscope.data.idx import open_idx, read_idx
from leafscope.data.spec import PointSet
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


# --- .npz / .npy -------------------------------------------------------------------------------


def _npz_error(path: Path, exc: BaseException) -> DataFileError:
    return DataFileError(
        f"cannot read {path} as .npz ({type(exc).__name__}: {exc}): save the images with "
        "numpy.savez(path, x=images, y=labels) using plain (non-object) arrays"
    )


def npz_keys(path: str | os.PathLike) -> list[str]:
    """The array names of an ``.npz`` (read from its zip directory, no array decoded).

    Raises:
        DataFileError: not a readable zip file.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _npz_error(path, exc) from None
    return [n[: -len(".npy")] if n.endswith(".npy") else n for n in names]


def npz_member(path: str | os.PathLike, key: str) -> np.ndarray:
    """The array ``key`` of an ``.npz`` at its stored dtype, memory-mapped (read-only) when the
    member is stored uncompressed (``numpy.savez``), else read once (``numpy.savez_compressed``).

    Raises:
        DataFileError: unreadable file, object arrays, or ``key`` missing.
    """
    path = Path(path)
    try:
        mapped = _npz_memmap(path, key + ".npy")
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, struct.error):
        mapped = None
    if mapped is not None:
        return mapped
    return read_npz_array(path, key)


def _npz_memmap(path: Path, member: str) -> np.ndarray | None:
    """A memory map of an uncompressed, unencrypted .npy member (None when it is not one)."""
    from numpy.lib import format as npy_format

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        handle.seek(start)
        version = npy_format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(handle)
        else:
            return None
        offset = handle.tell()
    if dtype.hasobject:
        raise DataFileError(
            f"{path}: array {member[:-4]!r} holds Python objects: save plain numeric arrays"
        )
    if offset - start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > info.file_size:
        return None
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.empty(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")  # fmt: skip


def npz_has_splits(keys: list[str]) -> bool:
    """Whether an npz with arrays ``keys`` has a train/test split (``x_train`` / ``x_test``)."""
    return "x_train" in keys or "x_test" in keys


def open_npz(path: Path, split: str, *, layout: str = "auto", whole: bool = False) -> PointSet:
    """An npz as a point set (data memory-mapped where stored uncompressed).

    Keys: data ``x_{split}`` (``whole=False``) or ``x``/``images``/``X``/``arr_0``
    (``whole=True``, a set without a split; ``split`` is then recorded only); labels
    ``y_{split}``/``y``/``labels``/``Y`` (or ``arr_1`` beside ``arr_0``), read whole.

    Raises:
        InputError: no data array, or labels that do not fit.
        DataFileError: unreadable file.
    """
    from leafscope.data.pointsets import ArrayPointSet

    keys = npz_keys(path)
    if whole:
        x_key = next((k for k in _X_KEYS if k in keys), None)
        if x_key is None:
            raise InputError(
                f"{path} has arrays {sorted(keys)} but no data: name them x (or images, arr_0; "
                "x_train and x_test for a set with a split)"
            )
    else:
        x_key = f"x_{split}"
        if x_key not in keys:
            raise InputError(
                f"{path} has arrays {sorted(keys)} but no {x_key}: save its {split} points as "
                f"{x_key}, or use the split it has"
            )
    y_keys = (*((f"y_{split}",) if not whole else ()), *_Y_KEYS)
    y_keys += ("arr_1",) if x_key == "arr_0" else ()
    y_key = next((k for k in y_keys if k in keys), None)
    images = npz_member(path, x_key)
    labels = read_npz_array(path, y_key) if y_key else None
    y, num_classes = labels_to_tensor(labels, len(images), str(path))
    return ArrayPointSet(
        images, y, name=str(path), split=split, source=f"{path} [{x_key}]",
        num_classes=num_classes, layout=layout,
    )  # fmt: skip


def open_npy(path: Path, split: str, *, layout: str = "auto") -> PointSet:
    """One unlabelled array from an ``.npy``, memory-mapped (read without pickle)."""
    from leafscope.data.pointsets import ArrayPointSet

    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(
            f"cannot read {path} as .npy ({type(exc).__name__}: {exc}): save it with "
            "numpy.save(path, array) using a plain (non-object) array"
        ) from None
    y, _ = labels_to_tensor(None, len(array), str(path))
    return ArrayPointSet(array, y, name=str(path), split=split, source=str(path),
                         num_classes=0, layout=layout)  # fmt: skip


def open_idx_file(path: Path, split: str) -> PointSet:
    """An IDX images file (memory-mapped when uncompressed); labels from the sibling file with
    ``images-idx3`` -> ``labels-idx1`` when it exists."""
    from leafscope.data.pointsets import ArrayPointSet

    images = open_idx(path)
    label_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    labels = None
    if label_path != path and label_path.is_file():
        labels = read_idx(label_path)
        if len(labels) != len(images):
            raise DataFileError(
                f"{label_path} has {len(labels)} labels for {len(images)} images in "
                f"{path}: use matching files"
            )
    y, num_classes = labels_to_tensor(labels, len(images), str(label_path))
    return ArrayPointSet(images, y, name=str(path), split=split, source=str(path),
                         num_classes=num_classes)  # fmt: skip


# --- image folders -----------------------------------------------------------------------------


def folder_splits(path: Path) -> list[str]:
    """The splits of an image folder: its ``train`` / ``test`` sub-folders (empty: none)."""
    return [s for s in ("train", "test") if (path / s).is_dir()]


def _image_names(folder: str) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(
            e.name
            for e in entries
            if not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
            and e.is_file()
        )


def _scan_folder(root: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Loose image file names and ``{class folder: image file names}`` (those with images)."""
    if not root.is_dir():
        raise DataFileError(f"folder {root} does not exist: give a folder of image files")
    loose = _image_names(str(root))
    with os.scandir(root) as entries:
        subdirs = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    classes = {}
    for name in subdirs:
        files = _image_names(os.path.join(root, name))
        if files:
            classes[name] = files
    return loose, classes


def folder_class_names(roots: list[Path]) -> list[str]:
    """The class folder names of the folders ``roots`` (e.g. train and test), sorted."""
    return sorted({name for root in roots for name in _scan_folder(root)[1]})


def mode_info(mode: str) -> tuple[int, str | None]:
    """Channels (1 grey, 3 colour) of a Pillow image of ``mode`` as :func:`pil_array` reads
    it, and what reading it changes (None: nothing)."""
    if mode in ("L", "1"):
        return 1, None
    if mode == "LA":
        return 1, "alpha channel dropped"
    if mode.startswith("I;16"):
        return 1, "16-bit grey values/65535"
    if mode == "RGBA":
        return 3, "alpha channel dropped"
    if mode in ("RGB", "P"):
        return 3, None
    return 3, f"{mode} images converted to RGB"


def pil_array(img: Any) -> tuple[np.ndarray, str | None]:
    """A loaded Pillow image as (H, W) grey or (H, W, 3) RGB, and what was changed (or None).

    Grey (L) and RGB are read as stored; alpha is dropped (LA -> L, RGBA -> RGB); 16-bit grey
    becomes floats /65535; palette and other modes are converted to RGB.
    """
    mode = img.mode
    _, note = mode_info(mode)
    if mode in ("L", "RGB"):
        return np.asarray(img), note
    if mode == "1":
        return np.asarray(img.convert("L")), note
    if mode == "LA":
        return np.asarray(img.getchannel("L")), note
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32) / np.float32(65535), note
    return np.asarray(img.convert("RGB")), note


def _decode_error(path: Any, exc: BaseException) -> DataFileError:
    return DataFileError(
        f"cannot decode image {path} ({type(exc).__name__}: {exc}): remove or re-save it "
        "as PNG/JPEG"
    )


def _read_image(path: Any) -> tuple[np.ndarray, str | None]:
    """One image file via Pillow (see :func:`pil_array`)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return pil_array(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise _decode_error(path, exc) from None


def _read_header(path: str) -> tuple[str, tuple[int, int]]:
    """Mode and (H, W) of an image file, from its header (the pixels are not decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode, (int(img.height), int(img.width))
    except (OSError, ValueError, SyntaxError) as exc:
        raise _decode_error(path, exc) from None


class FolderPointSet(PointSet):
    """Image files in a folder; sub-folder name = class. Opening lists the files and reads
    their headers (size, mode); :meth:`take` decodes only the files asked for.

    Integer sub-folder names are used as labels; other names are sorted and numbered (recorded
    in ``class_names``). Loose files directly in the folder are unlabelled (-1). Grey files stay
    one channel and colour files three; a folder mixing both gets the grey files repeated to
    three channels (recorded in ``transforms``). Files of different sizes need ``size``: each
    image is then resized to it (bilinear, antialiased when shrinking) as it is decoded.

    Args:
        path: the set's folder (recorded as its name).
        root: the folder read (``path`` or ``path/train``, ``path/test``).
        split: recorded split.
        size: ``(H, W)`` or ``"H,W"`` to resize every image to.
        class_names: the class names of every split (so that train and test number them alike);
            default: this folder's.

    Raises:
        InputError: no images, loose files beside class folders, or mixed sizes without ``size``.
        DataFileError: a file whose header Pillow cannot read.
    """

    def __init__(
        self,
        path: Path,
        root: Path,
        split: str,
        *,
        size: tuple[int, int] | str | None = None,
        class_names: list[str] | None = None,
    ):
        loose, classes = _scan_folder(root)
        if loose and classes:
            raise InputError(
                f"{root} holds both image files and class sub-folders: move the loose files into "
                "a class folder (or into a separate folder)"
            )
        if not loose and not classes:
            raise InputError(f"{root} contains no image files ({', '.join(IMAGE_SUFFIXES)})")
        self.root = root
        self.name, self.split = str(path), split
        if loose:
            self.files = [os.path.join(root, f) for f in loose]
            labels, self.class_names = None, None
        else:
            names = class_names if class_names is not None else sorted(classes)
            numeric = all(n.lstrip("-").isdigit() and int(n) >= 0 for n in names)
            ids = {n: (int(n) if numeric else i) for i, n in enumerate(names)}
            self.files = [os.path.join(root, c, f) for c, files in classes.items() for f in files]
            labels = np.repeat(
                np.array([ids[c] for c in classes], dtype=np.int64),
                [len(files) for files in classes.values()],
            )
            self.class_names = None if numeric else list(names)
        del loose, classes
        self._labels, self.num_classes = labels_to_tensor(labels, len(self.files), str(root))
        if self.class_names:
            self.num_classes = max(self.num_classes, len(self.class_names))
        sizes: dict[tuple[int, int], str] = {}
        modes: set[str] = set()
        for file in self.files:
            mode, hw = _read_header(file)
            modes.add(mode)
            sizes.setdefault(hw, file)
        channels = {mode_info(m)[0] for m in modes}
        self.channels = max(channels)
        notes = sorted({note for m in modes if (note := mode_info(m)[1])})
        if channels == {1, 3}:
            notes.append("grey files repeated to 3 channels to match the colour files")
        self.size = parse_size(size) if size is not None else None
        if self.size is None and len(sizes) > 1:
            (s1, f1), (s2, f2) = list(sizes.items())[:2]
            rel1, rel2 = os.path.relpath(f1, root), os.path.relpath(f2, root)
            raise InputError(
                f"images in {root} have different sizes ({s1[0]}x{s1[1]} in {rel1}, "
                f"{s2[0]}x{s2[1]} in {rel2}): resize them to one size (resize H,W)"
            )
        if self.size is not None:
            listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
            h, w = self.size
            notes.append(f"resize: {listed} -> {h}x{w} (bilinear, antialiased when shrinking)")
        self.image_size = self.size or next(iter(sizes))
        self.input_shape = (self.channels, *self.image_size)
        floats = any(m.startswith("I;16") for m in modes)
        bytes_ = any(not m.startswith("I;16") for m in modes)
        self.normalization = " | ".join(sorted({*([FLOAT_KEPT] if floats else []),
                                                *([PIXELS_255] if bytes_ else [])}))  # fmt: skip
        self.transforms = tuple(notes)
        self.source = f"{root} ({len(self.files)} image files)"

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def take(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.check_indices(indices)
        out = torch.empty((index.numel(), *self.input_shape), dtype=torch.float32)
        for j, i in enumerate(index.tolist()):
            file = self.files[i]
            array, _ = _read_image(file)
            if array.ndim == 2 and self.channels == 3:
                array = np.repeat(array[..., None], 3, axis=2)
            elif array.ndim == 3 and self.channels == 1:
                raise DataFileError(
                    f"{file} decodes to colour but its header and the other files are grey: "
                    "re-save it as a grey image"
                )
            if self.size is None and array.shape[:2] != self.image_size:
                h, w = self.image_size
                raise DataFileError(
                    f"{file} is {array.shape[0]}x{array.shape[1]}, not {h}x{w} like the other "
                    "files when the folder was opened: re-open the set after changing files"
                )
            x, _ = to_unit_images(array[None], source=str(self.root), layout="nhwc")
            out[j] = resize(x, self.size)[0] if self.size is not None else x[0]
        return out, self._labels[index]
