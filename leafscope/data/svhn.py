"""SVHN (cropped digits) from the upstream ``train_32x32.mat`` / ``test_32x32.mat``."""

from __future__ import annotations

import os

import numpy as np
import torch

from leafscope.data import registry
from leafscope.data.dataset import PIXELS_255
from leafscope.data.pointsets import ArrayPointSet
from leafscope.data.search import locate
from leafscope.data.spec import PointSet
from leafscope.errors import DataFileError


def read_svhn_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``.mat``: ``X`` uint8 (32, 32, 3, N) and ``y`` (N, 1) digits 1..10.

    Returns:
        ``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` with the digit 0 as label 0
        (upstream stores it as 10).

    Raises:
        DataFileError: unreadable, truncated or corrupt file, or unexpected arrays.
    """
    from scipy.io import loadmat

    fix = "delete it (it will be re-downloaded) or replace it with the upstream file"
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as exc:  # scipy raises many types on bad bytes; all mean "bad file"
        raise DataFileError(
            f"cannot read {path} as a MATLAB file, truncated or corrupt ({type(exc).__name__}: "
            f"{exc}): {fix}"
        ) from None
    x, y = mat.get("X"), mat.get("y")
    if (
        not isinstance(x, np.ndarray)
        or x.dtype != np.uint8
        or x.ndim != 4
        or x.shape[:3]
        != (
            32,
            32,
            3,
        )
    ):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else "missing"
        raise DataFileError(f"{path}: X is {got}, expected uint8 (32, 32, 3, N): {fix}")
    labels = np.asarray(y).reshape(-1) if isinstance(y, np.ndarray) else np.zeros(0)
    if len(labels) != x.shape[3]:
        raise DataFileError(f"{path}: {len(labels)} labels for {x.shape[3]} images: {fix}")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise DataFileError(
            f"{path}: labels span [{labels.min()}, {labels.max()}], expected 1..10: {fix}"
        )
    return np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1))), labels % 10


def open_svhn_set(
    split: str,
    *,
    data_dir: str | os.PathLike | None,
    download: bool,
) -> PointSet:
    """SVHN train (73257) or test (26032) digits as (3, 32, 32) pixels/255 (uint8 kept in
    memory, converted a batch at a time), labels 0..9."""
    spec = registry.IMAGE_DATASETS["svhn"]
    path = locate(spec, spec.splits[split][0], data_dir=data_dir, download=download)
    images, labels = read_svhn_mat(path)
    return ArrayPointSet(
        images,
        torch.from_numpy(labels),
        name="svhn",
        split=split,
        source=f"{path} (labels 10 -> 0)",
        num_classes=10,
        class_names=[str(d) for d in range(10)],
        normalization=PIXELS_255,
    )
