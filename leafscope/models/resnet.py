"""A CIFAR-style ResNet-18 (He et al. 2016): 3×3 stem, no max-pool, four stages of basic blocks."""

from __future__ import annotations

from torch import Tensor, nn

from leafscope.models.registry import (
    image_model_config,
    make_activation,
    register_model,
)

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (width, stride of the stage's first block)


class BasicBlock(nn.Module):
    """conv3×3(stride) → BN → act → conv3×3 → BN, plus the shortcut (1×1 conv + BN when the
    shape changes), then act."""

    def __init__(self, in_planes: int, planes: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.act2 = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


@register_model("resnet18")
class ResNet18(nn.Module):
    """stem conv3×3(in, 64) → BN → act → 4 stages × 2 basic blocks (64, 128, 256, 512; strides
    1, 2, 2, 2) → global average pool → fc(512, C).

    For CIFAR-10 (3 channels, C = 10) it has 11,173,962 parameters. Global pooling makes any
    input side ≥ 8 work (the last stage then sees ≥ 1×1 pixels).

    Args:
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        num_classes: number of logits C.
        in_channels: input channels.
        image_size: input side in pixels (≥ 8); only checked, the network adapts to any size.
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        self.config = image_model_config(
            "resnet18", activation=activation, num_classes=num_classes, in_channels=in_channels,
            image_size=image_size, min_size=8,
        )  # fmt: skip
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = make_activation(activation)
        in_planes = 64
        for i, (planes, stride) in enumerate(STAGES, start=1):
            blocks = [BasicBlock(in_planes, planes, stride, activation)]
            blocks.append(BasicBlock(planes, planes, 1, activation))
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            in_planes = planes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map images (N, in, H, W) to logits (N, C)."""
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.pool(x)))
