"""Image transforms in plain torch (no torchvision): grey conversion, resizing, rotations.

:func:`to_grey` and :func:`resize` act on (N, C, H, W) tensors; :func:`apply_transforms` applies
them to an :class:`~leafscope.data.ImageDataset` and records each step in its ``transforms`` list.
Nothing in leafscope converts or resizes data unless one of these is called (CLI: ``--grey``,
``--resize H,W``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from leafscope.errors import InputError

if TYPE_CHECKING:
    from leafscope.data.dataset import ImageDataset

__all__ = [
    "LUMA_601",
    "apply_transforms",
    "parse_size",
    "random_rotation",
    "resize",
    "rotate",
    "to_grey",
    "transform_batch",
    "transform_plan",
]

#: ITU-R BT.601 luma weights of R, G, B (applied to the stored values, no gamma linearisation).
LUMA_601 = (0.299, 0.587, 0.114)
GREY_NOTE = "grey: ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B"


def _check_images(images: torch.Tensor, what: str) -> None:
    if not torch.is_tensor(images) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise InputError(
            f"{what} needs float (N, C, H, W) images, got {shape}: vectors cannot be "
            f"converted to grey or resized"
        )


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """Grey images by ITU-R 601 luma: ``0.299 R + 0.587 G + 0.114 B``.

    One channel is returned unchanged; 2 channels are read as grey + alpha (alpha dropped);
    4 as RGBA (alpha dropped, luma of RGB).

    Args:
        images: (N, C, H, W) float images, C in 1..4.

    Returns:
        (N, 1, H, W), same dtype and device.
    """
    _check_images(images, "to_grey")
    c = images.shape[1]
    if c in (1, 2):
        return images[:, :1].clone()
    if c not in (3, 4):
        raise InputError(f"to_grey needs 1 to 4 channels (grey, grey+alpha, RGB, RGBA), got {c}")
    w = torch.tensor(LUMA_601, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images[:, :3] * w).sum(dim=1, keepdim=True)


def parse_size(text: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"H,W"`` (or ``"HxW"``, or one number for a square) or a pair -> ``(H, W)``.

    Raises:
        InputError: not one or two positive integers.
    """
    parts = text.replace("x", ",").split(",") if isinstance(text, str) else list(text)
    try:
        size = [int(p) for p in parts]
    except (TypeError, ValueError):
        size = []
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise InputError(f"bad size {text!r}: give H,W with positive integers, e.g. `resize=28,28`")
    return size[0], size[1]


def resize(images: torch.Tensor, size: tuple[int, int] | str) -> torch.Tensor:
    """Resize images bilinearly (``align_corners=False``), antialiased when shrinking.

    Shrinking uses the triangle filter widened by the scale factor (the same filter as Pillow's
    ``Image.BILINEAR``); enlarging is plain bilinear interpolation. Values are clamped to [0, 1].

    Args:
        images: (N, C, H, W) float images in [0, 1].
        size: ``(H', W')`` or ``"H',W'"``.

    Returns:
        (N, C, H', W'); the input itself (not a copy) when the size already matches.
    """
    _check_images(images, "resize")
    h, w = parse_size(size)
    if tuple(images.shape[-2:]) == (h, w):
        return images
    down = h < images.shape[-2] or w < images.shape[-1]
    out = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=down)
    return out.clamp_(0.0, 1.0)


def transform_plan(
    input_shape: tuple[int, ...],
    *,
    grey: bool = False,
    size: tuple[int, int] | str | None = None,
    name: str = "the data",
) -> tuple[tuple[int, ...], list[str]]:
    """What :func:`transform_batch` does to points of ``input_shape``: their new shape and one
    readable line per step (a step that changes nothing is said so).

    Raises:
        InputError: the points are vectors, have more than 4 channels (grey), or a bad size.
    """
    if not grey and size is None:
        return tuple(input_shape), []
    if len(input_shape) != 3:
        raise InputError(
            f"{name} holds vectors of shape {tuple(input_shape)}: grey and resize apply to "
            "images only; drop them"
        )
    c, h0, w0 = (int(s) for s in input_shape)
    notes = []
    if grey:
        if c == 1:
            notes.append("grey: already 1 channel, unchanged")
        elif c == 2:
            notes.append("grey: grey+alpha, alpha dropped")
        elif c in (3, 4):
            notes.append(f"{GREY_NOTE}, {c} -> 1 channels" + (" (alpha dropped)" if c == 4 else ""))
        else:
            raise InputError(
                f"to_grey needs 1 to 4 channels (grey, grey+alpha, RGB, RGBA), got {c}"
            )
        c = 1
    if size is not None:
        h, w = parse_size(size)
        if (h0, w0) == (h, w):
            notes.append(f"resize: already {h}x{w}, unchanged")
        else:
            down = h < h0 or w < w0
            notes.append(
                f"resize: {h0}x{w0} -> {h}x{w} (bilinear{', antialiased' if down else ''})"
            )
        h0, w0 = h, w
    return (c, h0, w0), notes


def transform_batch(
    images: torch.Tensor, *, grey: bool = False, size: tuple[int, int] | str | None = None
) -> torch.Tensor:
    """Grey (:func:`to_grey`, first) then resize (:func:`resize`) a batch of images; both act
    image by image, so a batch gives the same values as the whole set."""
    if grey and images.shape[1] != 1:
        images = to_grey(images)
    if size is not None:
        images = resize(images, size)
    return images


def apply_transforms(
    dataset: ImageDataset, *, grey: bool = False, size: tuple[int, int] | str | None = None
) -> ImageDataset:
    """Convert a dataset to grey and / or resize it, recording each step in ``transforms``.

    Grey conversion (:func:`to_grey`) comes first, then resizing (:func:`resize`). A step that
    changes nothing (grey data, same size) is recorded as such.

    Args:
        dataset: an image dataset.
        grey: convert to one channel by ITU-R 601 luma.
        size: ``(H, W)`` to resize to, or None.

    Returns:
        A new dataset (the input is not modified); itself when nothing was asked.

    Raises:
        InputError: the dataset holds vectors, or a bad size.
    """
    if not grey and size is None:
        return dataset
    _, notes = transform_plan(dataset.input_shape, grey=grey, size=size, name=dataset.name)
    x = transform_batch(dataset.images, grey=grey, size=size)
    return replace(dataset, images=x, transforms=[*dataset.transforms, *notes])


def rotate(images: torch.Tensor, degrees: torch.Tensor | float) -> torch.Tensor:
    """Rotate images about their centre (bilinear, zero fill outside).

    Positive angles turn the image counter-clockwise as displayed (rows downwards), like
    ``torch.rot90``: ``rotate(x, 90)`` equals ``torch.rot90(x, 1, (2, 3))`` up to rounding.

    Args:
        images: (N, C, H, W) floating-point images.
        degrees: one angle for all images, or (N,) angles in degrees.

    Returns:
        (N, C, H, W) rotated images, same dtype and device. A rotation by 0 returns the input
        exactly; by a multiple of 90° on a square image it permutes the pixels.

    Examples:
        >>> x = torch.rand(2, 1, 28, 28)
        >>> rotate(x, 0.0).equal(x)
        True
    """
    if not torch.is_tensor(images) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        vectors = torch.is_tensor(images) and images.ndim == 2
        raise InputError(
            f"rotate needs float (N, C, H, W) images, got {shape}"
            + (": vectors (N, D) cannot be rotated; use image data" if vectors else "")
        )
    n = images.shape[0]
    angle = torch.as_tensor(degrees, dtype=images.dtype, device=images.device)
    if angle.ndim == 0:
        angle = angle.expand(n)
    if angle.shape != (n,):
        raise InputError(f"degrees must be a number or have shape ({n},), got {tuple(angle.shape)}")
    if not torch.isfinite(angle).all():
        raise InputError("degrees contains NaN or inf: pass finite angles")
    if bool((angle == 0).all()):
        return images.clone()
    rad = angle * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    # affine_grid maps output coordinates to input coordinates: use the inverse rotation.
    theta = torch.stack(
        [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rotation(
    images: torch.Tensor, max_degrees: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate each image by an angle drawn uniformly from [−max_degrees, max_degrees].

    Args:
        images: (N, C, H, W) float images. max_degrees: in [0, 180].
        generator: CPU generator for the angles (seeded for reproducible augmentation).

    Returns:
        (N, C, H, W) rotated images.
    """
    if not 0 <= max_degrees <= 180:
        raise InputError(f"max_degrees must be in [0, 180], got {max_degrees}")
    if max_degrees == 0:
        return images
    u = torch.rand(images.shape[0], generator=generator)
    return rotate(images, ((2 * u - 1) * max_degrees).to(images.device, images.dtype))
