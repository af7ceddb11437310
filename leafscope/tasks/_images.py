"""Image files of the tasks without matplotlib (which only the report and the commands use):
a strip of frames with a caption under each, and an animated GIF, written with Pillow.

Frames are images ``(C, H, W)`` with values in [0, 1] (one channel: grey, three: RGB, any other
count: the first channel in grey); values outside [0, 1] are clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from leafscope.io import atomic_write

__all__ = ["save_gif", "save_strip"]


def _to_pixels(frame: np.ndarray, scale: int) -> np.ndarray:
    """``(H*scale, W*scale, 3)`` uint8 of one ``(C, H, W)`` frame (nearest-neighbour scaling)."""
    frame = np.clip(np.nan_to_num(np.asarray(frame, dtype=np.float64)), 0.0, 1.0)
    if frame.ndim == 2:
        frame = frame[None]
    rgb = frame[:3] if frame.shape[0] == 3 else np.repeat(frame[:1], 3, axis=0)
    pixels = np.round(255 * rgb).astype(np.uint8).transpose(1, 2, 0)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


def _scale(frame: np.ndarray) -> int:
    """A nearest-neighbour factor that makes small images (MNIST: 28 px) readable."""
    side = max(frame.shape[-2:])
    return max(1, 112 // max(side, 1))


def save_strip(frames: Sequence[np.ndarray], captions: Sequence[str], path: str | Path) -> Path:
    """Write the frames side by side, each captioned below, as a PNG (atomically)."""
    from PIL import Image, ImageDraw

    scale = _scale(np.asarray(frames[0]))
    tiles = [_to_pixels(f, scale) for f in frames]
    h, w = tiles[0].shape[:2]
    lines = max(str(c).count("\n") + 1 for c in captions) if captions else 0
    pad, text_h = 4, 12 * lines
    width = len(tiles) * (w + pad) + pad
    canvas = Image.new("RGB", (width, h + text_h + 3 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        x = pad + i * (w + pad)
        canvas.paste(Image.fromarray(tile), (x, pad))
        draw.multiline_text((x, h + 2 * pad), str(caption), fill="black", spacing=1)
    return atomic_write(path, lambda handle: canvas.save(handle, format="PNG"))


def save_gif(
    frames: Sequence[np.ndarray], captions: Sequence[str], path: str | Path, fps: int = 12
) -> Path:
    """Write the frames as an animated GIF (looping), each with its caption above the image."""
    from PIL import Image, ImageDraw

    scale = _scale(np.asarray(frames[0]))
    images = []
    for frame, caption in zip(frames, captions, strict=True):
        tile = _to_pixels(frame, scale)
        h, w = tile.shape[:2]
        canvas = Image.new("RGB", (max(w, 120), h + 16), "white")
        canvas.paste(Image.fromarray(tile), (0, 16))
        ImageDraw.Draw(canvas).text((2, 2), str(caption), fill="black")
        images.append(canvas.convert("P", palette=Image.Palette.ADAPTIVE))
    duration = max(1, round(1000 / fps))

    def write(handle) -> None:
        images[0].save(
            handle,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=duration,
            loop=0,
        )

    return atomic_write(path, write)
