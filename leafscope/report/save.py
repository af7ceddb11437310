"""Saving figures: PNG written atomically through :func:`leafscope.io.atomic_write_bytes`."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from leafscope.io import atomic_write_bytes  # noqa: E402

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically (folders created), then close it.

    Args:
        fig: the figure (closed afterwards, also on error).
        path: the PNG file. dpi: resolution in dots per inch.

    Returns:
        The written path.
    """
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
