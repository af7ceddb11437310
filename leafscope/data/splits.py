"""Index splits and single-point specs such as ``"mnist:test:17"``."""

from __future__ import annotations

import os

import torch

from leafscope.data.images import SPLITS
from leafscope.errors import InputError


def train_val_split(
    n: int, val_fraction: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into train / validation indices by a seeded permutation.

    Args:
        n: number of points (>= 2).
        val_fraction: share of points in validation, in (0, 1); rounded, at least one point in each.
        seed: permutation seed.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 tensors, disjoint, together ``range(n)``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InputError(f"train_val_split needs n >= 2 points, got {n!r}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise InputError(f"val_fraction must lie in (0, 1), got {val_fraction!r}: e.g. use 0.1")
    n_val = min(max(int(round(n * float(val_fraction))), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def parse_point_spec(spec: str) -> tuple[str, str, int]:
    """Parse ``"NAME:SPLIT:INDEX"`` (NAME may itself contain ``:``, e.g. ``npz:/a/b.npz:test:3``).

    Returns:
        ``(name, split, index)``.

    Raises:
        InputError: not three parts, unknown split, or an index that is not a non-negative integer.
    """
    parts = spec.rsplit(":", 2) if isinstance(spec, str) else []
    hint = "use NAME:SPLIT:INDEX, e.g. mnist:test:17"
    if len(parts) != 3 or not parts[0]:
        raise InputError(f"malformed point spec {spec!r}: {hint}")
    name, split, index = parts
    if split not in (*SPLITS, "all"):
        raise InputError(
            f"point spec {spec!r} has split {split!r}: use train, test or all ({hint})"
        )
    if not index.isdigit():
        raise InputError(f"point spec {spec!r} has index {index!r}: use an integer >= 0 ({hint})")
    return name, split, int(index)


def load_point(spec: str, data_dir: str | os.PathLike | None = None) -> tuple[torch.Tensor, int]:
    """Load one image named by ``"NAME:SPLIT:INDEX"``.

    Returns:
        ``(point, label)``: the point at its own shape ((C, H, W) image in [0, 1] or (D,)
        vector), label -1 when unlabelled.

    Raises:
        InputError: malformed spec or index out of range (the message gives the valid range).
    """
    from leafscope.data.sets import open_points

    name, split, index = parse_point_spec(spec)
    points = open_points(name, split, data_dir=data_dir, strict=False)
    if index >= len(points):
        raise InputError(
            f"point {spec!r}: index {index} is out of range, {name}:{split} has {len(points)} "
            f"points (valid 0..{len(points) - 1})"
        )
    x, y = points.take([index])
    return x[0], int(y[0])
