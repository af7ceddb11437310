"""Image transforms in plain torch (no torchvision): rotations for augmentation and invariance."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from leafscope.errors import InputError

__all__ = ["random_rotation", "rotate"]


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
        raise InputError(f"images must be a float (N, C, H, W) tensor, got {shape}")
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
