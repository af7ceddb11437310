"""A small VGG-style CNN: blocks of (conv3×3 → BN → act) × k, max-pool between blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.models.registry import (
    check_positive_int,
    image_model_config,
    make_activation,
    register_model,
)


@register_model("vgg")
class SmallVGG(nn.Module):
    """``len(widths)`` blocks, each ``convs_per_block`` × (conv3×3 pad 1 → BN → act), a 2×2
    max-pool after every block but the last (skipped once the feature map is 1 pixel wide or
    high), then global average pooling → fc(widths[-1], C). Any input size ≥ 1 works.

    With the defaults (widths 32, 64, 128; two convs per block) and 3 input channels, C = 10,
    it has 288,746 parameters.

    Args:
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        num_classes: number of logits C.
        in_channels: input channels.
        image_size: input side in pixels (only checked: the network adapts to any size).
        widths: output channels of each block (default (32, 64, 128)).
        convs_per_block: convolutions per block (default 2).
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        widths: Sequence[int] = (32, 64, 128),
        convs_per_block: int = 2,
    ) -> None:
        super().__init__()
        check_positive_int(convs_per_block, "convs_per_block")
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
            raise InputError(f"widths must be a non-empty list of integers (got {widths!r})")
        widths = [check_positive_int(w, "each block width") for w in widths]
        self.config = image_model_config(
            "vgg", activation=activation, num_classes=num_classes, in_channels=in_channels,
            image_size=image_size, widths=list(widths), convs_per_block=convs_per_block,
        )  # fmt: skip
        channels = in_channels
        for b, width in enumerate(widths, start=1):
            layers: list[nn.Module] = []
            for _ in range(convs_per_block):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    make_activation(activation),
                ]
                channels = width
            setattr(self, f"block{b}", nn.Sequential(*layers))
        self.n_blocks = len(widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map images (N, in, H, W) to logits (N, C)."""
        for b in range(1, self.n_blocks + 1):
            x = getattr(self, f"block{b}")(x)
            if b < self.n_blocks and min(x.shape[-2:]) >= 2:
                x = F.max_pool2d(x, 2)
        return self.fc(self.flatten(self.pool(x)))
