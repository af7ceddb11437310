"""CIFAR-10 / CIFAR-100 from the upstream ``cifar-*-python.tar.gz`` archives.

The archive is read in memory (nothing is extracted to disk) and its batches, Python 2 pickles,
are decoded by :class:`CifarUnpickler`, which resolves only the names numpy needs to rebuild an
array: a malicious file cannot run code. Images are kept as uint8 and come out as (N, 3, 32, 32)
in [0, 1], a batch at a time.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.data import registry
from leafscope.data.dataset import PIXELS_255
from leafscope.data.pointsets import ArrayPointSet
from leafscope.data.search import locate
from leafscope.data.spec import PointSet
from leafscope.errors import DataFileError

_NUMPY_NAMES = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # bytes inside protocol-2 pickles written by Python 3
}
_SIDE = 32


class CifarUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: builtins' plain values plus numpy's array reconstruction."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) not in _NUMPY_NAMES:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        from leafscope.data.planetoid import _resolve

        return _resolve("numpy.core.multiarray" if "multiarray" in module else module, name)


def _unpickle(raw: bytes, where: str) -> dict[str, Any]:
    try:
        obj = CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # any failure on untrusted bytes becomes one clear message
        raise DataFileError(
            f"cannot decode {where} ({type(exc).__name__}: {exc}): the archive is corrupt; "
            "delete it (it will be re-downloaded) or replace it with the upstream file"
        ) from None
    if not isinstance(obj, dict):
        raise DataFileError(f"{where} holds a {type(obj).__name__}, expected a dict: replace it")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_members(path: str | os.PathLike, names: list[str]) -> dict[str, bytes]:
    """Read the members ``names`` (paths inside the archive) of a ``.tar.gz`` into memory.

    Raises:
        DataFileError: unreadable, truncated or corrupt archive, or a member missing.
    """
    path = Path(path)
    wanted, found = set(names), {}
    fix = "delete it (it will be re-downloaded) or replace it with the upstream file"
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    found[member.name] = handle.read() if handle is not None else b""
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataFileError(
            f"{path} is not a readable .tar.gz: truncated or corrupt ({type(exc).__name__}: "
            f"{exc}): {fix}"
        ) from None
    missing = [n for n in names if n not in found]
    if missing:
        raise DataFileError(f"{path} lacks {', '.join(missing)}: not the upstream file; {fix}")
    return found


def _batch(obj: dict[str, Any], label_key: str, num_classes: int, where: str) -> tuple:
    data, labels = obj.get("data"), obj.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFileError(
            f"{where}: 'data' is {got}, expected uint8 (N, 3072): replace the archive"
        )
    if data.shape[1] != 3 * _SIDE * _SIDE:
        raise DataFileError(
            f"{where}: images have {data.shape[1]} values, expected 3072 (3x32x32): replace it"
        )
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        y = np.zeros(0, np.int64)
    if len(y) != len(data):
        raise DataFileError(
            f"{where}: {len(y)} labels ({label_key!r}) for {len(data)} images: replace it"
        )
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataFileError(
            f"{where}: labels span [{y.min()}, {y.max()}], expected 0..{num_classes - 1}: "
            "replace the archive"
        )
    return data.reshape(-1, 3, _SIDE, _SIDE), y


def open_cifar_set(
    key: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None,
    download: bool,
) -> PointSet:
    """CIFAR-10 (``cifar10``), CIFAR-100 fine (``cifar100``) or coarse (``cifar100-coarse``).

    Returns:
        A point set of (3, 32, 32) images (pixels/255, converted a batch at a time from the
        uint8 arrays kept in memory) in the upstream order (train: batches 1..5), labels int64,
        class names from the archive's meta file.
    """
    coarse = key == "cifar100-coarse"
    spec = registry.IMAGE_DATASETS["cifar100" if coarse else key]
    archive, top, splits, meta_name = registry.CIFAR_LAYOUT[spec.key]
    label_key = {"cifar10": "labels", "cifar100": "fine_labels"}[spec.key]
    label_key = "coarse_labels" if coarse else label_key
    num_classes = 20 if coarse else spec.num_classes
    path = locate(spec, archive, data_dir=data_dir, download=download)
    members = [f"{top}/{name}" for name in splits[split]]
    raw = read_cifar_members(path, [*members, f"{top}/{meta_name}"])
    images, labels = [], []
    for name in members:
        x, y = _batch(_unpickle(raw.pop(name), f"{path}:{name}"), label_key, num_classes, name)
        images.append(x)
        labels.append(y)
    x = np.concatenate(images) if images else np.zeros((0, 3, _SIDE, _SIDE), np.uint8)
    y = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    del images, labels
    meta = _unpickle(raw[f"{top}/{meta_name}"], f"{path}:{top}/{meta_name}")
    names_key = "label_names" if spec.key == "cifar10" else label_key[:-1] + "_names"
    names = [str(n) for n in meta.get(names_key, [])] or list(spec.class_names or [])
    return ArrayPointSet(
        x,
        torch.from_numpy(y),
        name=key,
        split=split,
        source=f"{path} [{', '.join(splits[split])}]",
        num_classes=num_classes,
        class_names=names if len(names) == num_classes else None,
        normalization=PIXELS_255,
    )
