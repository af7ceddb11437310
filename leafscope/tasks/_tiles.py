"""Picture files of points for the tasks' ``write_files``: rows of tiles drawn with Pillow.

The task layer draws no matplotlib figures (those belong to :mod:`leafscope.report`); a grid of
points is only pixels, so it is written here: images ``(C, H, W)`` in [0, 1] as themselves (RGB
in colour, one channel in grey, scaled up by whole pixels), vectors ``(D,)`` as a strip of grey
cells on one shared value range. Each row may carry a label on its left and each tile a caption.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from leafscope.io import atomic_write_bytes

__all__ = ["tile_png"]

PAD = 4
VECTOR_HEIGHT = 16


def _as_rgb(point: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """One point as ``(h, w, 3)`` uint8: an image in [0, 1], or a vector strip."""
    x = np.asarray(point, dtype=np.float64)
    if x.ndim == 3:  # (C, H, W)
        x = np.clip(x, 0.0, 1.0)
        x = x.transpose(1, 2, 0) if x.shape[0] == 3 else np.repeat(x.mean(0)[..., None], 3, 2)
    elif x.ndim == 2:  # (H, W)
        x = np.repeat(np.clip(x, 0.0, 1.0)[..., None], 3, 2)
    else:  # a vector: one grey cell per coordinate
        lo, hi = value_range if value_range is not None else (float(x.min()), float(x.max()))
        v = (x.reshape(-1) - lo) / (hi - lo) if hi > lo else np.full(x.size, 0.5)
        x = np.repeat(np.repeat(np.clip(v, 0.0, 1.0)[None, :, None], VECTOR_HEIGHT, 0), 3, 2)
    return np.round(x * 255).astype(np.uint8)


def _scale(tile: np.ndarray, min_side: int) -> np.ndarray:
    k = max(1, int(np.ceil(min_side / max(1, min(tile.shape[0], tile.shape[1])))))
    if tile.shape[0] == VECTOR_HEIGHT and tile.shape[1] > tile.shape[0]:
        k = max(1, int(np.ceil(min_side * 2 / tile.shape[1])))  # strips: widen only to 2x
        return np.repeat(tile, k, axis=1)
    return np.repeat(np.repeat(tile, k, axis=0), k, axis=1)


def tile_png(
    path: str | Path,
    rows: Sequence[tuple[str, np.ndarray]],
    *,
    captions: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    min_side: int = 56,
) -> Path:
    """Write a PNG with one row of tiles per ``(label, points)`` of ``rows``.

    Args:
        path: the PNG file (written atomically).
        rows: ``(label, points)``, points ``(n, C, H, W)`` images in [0, 1], ``(n, H, W)`` or
            ``(n, D)`` vectors; a row may be empty.
        captions: per row, one text per tile (e.g. the predicted class and its probability).
        title: a line above the grid.
        min_side: tiles are scaled up by whole pixels to at least this many pixels.

    Returns:
        ``path``.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    arrays = [np.asarray(points, dtype=np.float64) for _, points in rows]
    vectors = [a for a in arrays if a.ndim == 2 and len(a)]
    value_range = None
    if vectors:
        every = np.concatenate([v.reshape(-1) for v in vectors])
        value_range = (float(every.min()), float(every.max()))
    tiles = [[_scale(_as_rgb(p, value_range), min_side) for p in a] for a in arrays]
    tile_h = max((t.shape[0] for row in tiles for t in row), default=min_side)
    tile_w = max((t.shape[1] for row in tiles for t in row), default=min_side)
    text_h = 12
    label_w = max((int(font.getlength(label)) for label, _ in rows), default=0) + 2 * PAD
    cell_h = tile_h + (text_h if captions is not None else 0) + PAD
    n_cols = max((len(row) for row in tiles), default=1)
    top = text_h + PAD if title else PAD
    width = label_w + n_cols * (tile_w + PAD) + PAD
    height = top + len(rows) * cell_h + PAD
    canvas = Image.new("RGB", (max(width, 1), max(height, 1)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD, 2), title, fill="black", font=font)
    for r, ((label, _), row) in enumerate(zip(rows, tiles, strict=True)):
        y = top + r * cell_h
        draw.text((PAD, y + tile_h // 2 - 5), label, fill="black", font=font)
        for c, tile in enumerate(row):
            x = label_w + c * (tile_w + PAD)
            canvas.paste(Image.fromarray(tile, "RGB"), (x, y))
            if captions is not None and c < len(captions[r]):
                draw.text((x, y + tile.shape[0] + 1), captions[r][c], fill="black", font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())
