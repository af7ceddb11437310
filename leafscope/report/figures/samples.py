"""Drawing one data point on an axis: grey images in grey, RGB images in colour, vectors as bars.

Every image figure (path and walk strips, image grids, generated images, denoising strips, the
demo's figures) draws its points with :func:`draw_sample`, so a figure works on any data set:

- ``(H, W)`` or ``(1, H, W)``: grey, ``cmap="gray"`` on [0, 1];
- ``(3, H, W)``: RGB in colour (channel-last for ``imshow``), clipped to [0, 1]; ``(4, H, W)``:
  RGBA (alpha kept);
- ``(2, H, W)``: grey + alpha, drawn as grey (the alpha channel dropped);
- other channel counts: the per-pixel mean over channels, in grey;
- ``(D,)`` vectors: a bar plot of the D values (a line plot when D > ``MAX_BARS``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leafscope.errors import InputError

__all__ = ["MAX_BARS", "draw_sample", "image_array", "is_image", "shared_range"]

#: Vectors longer than this are drawn as a line instead of bars.
MAX_BARS = 64


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def is_image(x: Any) -> bool:
    """Whether one point ``x`` is an image, ``(H, W)`` or ``(C, H, W)``, rather than a vector."""
    return _numpy(x).ndim in (2, 3)


def image_array(x: Any) -> tuple[np.ndarray, str | None]:
    """One image as an array for ``imshow``, clipped to [0, 1], and its colour map.

    Args:
        x: ``(H, W)`` or ``(C, H, W)`` image (tensor or array), values nominally in [0, 1].

    Returns:
        ``(array, cmap)``: ``(H, W)`` with ``"gray"`` for one channel (and for 2 or more than 4
        channels, see the module docstring), or ``(H, W, 3|4)`` channel-last with ``None``.

    Raises:
        InputError: ``x`` is not 2-D or 3-D.
    """
    a = _numpy(x)
    if a.ndim == 2:
        return np.clip(a, 0.0, 1.0), "gray"
    if a.ndim != 3:
        raise InputError(
            f"an image must be (H, W) or (C, H, W), got shape {a.shape}: draw vectors with "
            "draw_sample (a bar plot)"
        )
    c = a.shape[0]
    if c in (3, 4):
        return np.clip(np.moveaxis(a, 0, -1), 0.0, 1.0), None
    grey = a[0] if c in (1, 2) else a.mean(axis=0)
    return np.clip(grey, 0.0, 1.0), "gray"


def draw_sample(ax: Any, x: Any, *, value_range: tuple[float, float] | None = None) -> None:
    """Draw one point on ``ax``: an image (grey or colour) or a vector (bars / line).

    Args:
        ax: a matplotlib axis.
        x: ``(H, W)``, ``(C, H, W)`` image or ``(D,)`` vector (tensor or array).
        value_range: y-limits of a vector plot (e.g. shared across a strip); default: its own.
    """
    a = _numpy(x)
    if a.ndim in (2, 3):
        img, cmap = image_array(a)
        ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    v = a.reshape(-1)
    if v.size <= MAX_BARS:
        ax.bar(np.arange(v.size), v, width=0.8, color="tab:blue")
    else:
        ax.plot(np.arange(v.size), v, lw=0.8, color="tab:blue")
    ax.axhline(0.0, color="grey", lw=0.5)
    if value_range is not None and value_range[1] > value_range[0]:
        ax.set_ylim(*value_range)
    ax.set_xticks([])
    ax.tick_params(axis="y", labelsize=6)


def shared_range(points: Any) -> tuple[float, float] | None:
    """y-limits shared by vector plots of ``points`` (N, D) (5% margin); None for images."""
    a = _numpy(points)
    if a.ndim != 2 or a.size == 0:
        return None
    lo, hi = float(min(a.min(), 0.0)), float(max(a.max(), 0.0))
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad
