"""Figures of what the model notices: the top eigen-directions of G at a few points, and the
images of a walk along a leaf direction beside a walk along a kernel direction (the ``view``
records of the ``explore`` task)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["decode_png", "directions_figure", "walks_figure"]


def decode_png(text: str) -> np.ndarray:
    """A base64 PNG as an array: (H, W) grey or (H, W, 3) RGB, uint8 (palette PNGs as RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(text))) as img:
        if img.mode == "P":
            img = img.convert("RGB")
        return np.asarray(img)


def _show(ax: Any, image: np.ndarray, title: str) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def directions_figure(views: Sequence[Mapping[str, Any]], titles: Sequence[str]) -> Figure:
    """One row per point: the image, then its leaf eigen-directions (signed map: red brightens,
    blue darkens) with their eigenvalues, then its kernel direction."""
    cols = 1 + max(len(v["directions"]) for v in views)
    fig, axes = plt.subplots(len(views), cols, figsize=(1.6 * cols, 1.75 * len(views)),
                             squeeze=False)  # fmt: skip
    for row, (view, title) in enumerate(zip(views, titles, strict=True)):
        _show(axes[row, 0], decode_png(view["image"]), title)
        for col, entry in enumerate(view["directions"], start=1):
            if entry["kind"] == "leaf":
                label = f"leaf {entry['order']}: λ={entry['eigenvalue']:.1e}"
            else:
                label = f"kernel: vᵀGv={entry['vgv']:.0e}"
            _show(axes[row, col], decode_png(entry["map"]), label)
        for col in range(1 + len(view["directions"]), cols):
            axes[row, col].axis("off")
    fig.tight_layout()
    return fig


def walks_figure(view: Mapping[str, Any], predicted: int, class_names: Sequence[str]) -> Figure:
    """Two strips of the images of one point's walks: along leaf direction 1 (top) and along
    a kernel direction (bottom), each image titled with the model's probability of the
    predicted class on exactly that image."""
    leaf = next(e for e in view["directions"] if e["kind"] == "leaf")
    kernel = next((e for e in view["directions"] if e["kind"] == "kernel"), None)
    strips = [("leaf direction 1", leaf)] + ([("kernel direction", kernel)] if kernel else [])
    n = len(leaf["frames"])
    fig, axes = plt.subplots(len(strips), n, figsize=(1.15 * n, 1.45 * len(strips)),
                             squeeze=False)  # fmt: skip
    name = class_names[predicted] if predicted < len(class_names) else str(predicted)
    for row, (label, entry) in enumerate(strips):
        for col, frame in enumerate(entry["frames"]):
            p = entry["probs"][col][predicted]
            _show(axes[row, col], decode_png(frame), f"p({name})={p:.2f}")
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return fig
