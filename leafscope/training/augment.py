"""Per-batch image augmentations for :func:`leafscope.training.fit` (plain torch, seeded).

An augmentation is any callable ``augment(x, generator) -> x`` on a batch of images
``(N, C, H, W)``; it draws all its randomness from the CPU ``generator``, which :func:`fit` seeds
per batch from ``(seed, epoch, batch)``, so an interrupted run resumes to identical weights.
Several augmentations are applied in order with the same generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from leafscope.data.transforms import random_rotation
from leafscope.errors import InputError

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "HorizontalFlip",
    "RandomCrop",
    "RandomRotation",
    "describe",
    "parse_augment",
]

Augmentation = Callable[[Tensor, torch.Generator], Tensor]


def _check_images(x: Tensor, what: str) -> None:
    if x.dim() != 4:
        raise InputError(
            f"{what} needs image batches (N, C, H, W); got shape {tuple(x.shape)}: "
            "use it only with image data"
        )


@dataclass(frozen=True)
class RandomCrop:
    """Pad every side by ``padding`` pixels of ``fill`` and crop back to (H, W) at a random offset.

    Each image gets its own offset ``(dy, dx)``, uniform in ``{0, ..., 2·padding}²`` (so a shift
    of up to ``padding`` pixels in every direction; ``padding = 0`` is the identity).
    """

    padding: int = 4
    fill: float = 0.0

    def __post_init__(self) -> None:
        p = self.padding
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise InputError(f"crop padding must be an integer >= 0 (got {p!r})")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_images(x, "random crop")
        p = self.padding
        if p == 0:
            return x
        n, _, h, w = x.shape
        offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator).to(x.device)
        padded = torch.nn.functional.pad(x, (p, p, p, p), value=self.fill)
        rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
        cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
        batch = torch.arange(n, device=x.device)[:, None, None]
        # (N, H+2p, W+2p, C) indexed by (N, H, W) grids -> (N, H, W, C)
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror each image left-right (last axis) with probability ``p``."""

    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise InputError(f"flip probability must be in [0, 1] (got {self.p!r})")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_images(x, "horizontal flip")
        flip = (torch.rand(x.shape[0], generator=generator) < self.p).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


@dataclass(frozen=True)
class RandomRotation:
    """Rotate each image by an angle uniform in [−degrees, degrees] (bilinear, zero fill)."""

    degrees: float

    def __post_init__(self) -> None:
        if not 0 <= self.degrees <= 180:
            raise InputError(f"rotation degrees must be in [0, 180] (got {self.degrees!r})")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_images(x, "random rotation")
        return random_rotation(x, self.degrees, generator)


AUGMENTATIONS: dict[str, Callable[[], Augmentation]] = {
    "crop": RandomCrop,
    "flip": HorizontalFlip,
}


def parse_augment(text: str | None, *, crop_padding: int = 4) -> list[Augmentation]:
    """Augmentations named in a comma-separated list such as ``"crop,flip"`` (order kept).

    Args:
        text: names from :data:`AUGMENTATIONS`; None or ``""`` gives no augmentation.
        crop_padding: padding of ``crop`` in pixels.

    Returns:
        The augmentation objects.
    """
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    out: list[Augmentation] = []
    for name in names:
        if name not in AUGMENTATIONS:
            raise InputError(
                f"unknown augmentation {name!r}: use a comma-separated list of "
                f"{', '.join(AUGMENTATIONS)}"
            )
        out.append(RandomCrop(crop_padding) if name == "crop" else AUGMENTATIONS[name]())
    if len(set(names)) != len(names):
        raise InputError(f"augmentation list {text!r} names one augmentation twice")
    return out


def describe(augment: Sequence[Augmentation]) -> list[str]:
    """Plain descriptions (dataclass repr or qualified name) recorded in the run's settings."""
    out = []
    for a in augment:
        if hasattr(a, "__dataclass_fields__"):
            out.append(repr(a))
        else:
            out.append(getattr(a, "__qualname__", type(a).__qualname__))
    return out
