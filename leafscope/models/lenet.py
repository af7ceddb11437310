"""LeNet-5 (LeCun et al. 1998) with a padded first convolution, as in the pruning papers."""

from __future__ import annotations

from torch import Tensor, nn

from leafscope.models.registry import (
    image_model_config,
    make_activation,
    register_model,
)


@register_model("lenet")
class LeNet5(nn.Module):
    """conv1(in,6,5,pad 2) → act → pool2 → conv2(6,16,5) → act → pool2 → fc1 → act → fc2(120,84)
    → act → fc3(84,C).

    With 28×28 inputs ``fc1`` is Linear(400, 120) and the model has 61,706 parameters (C = 10).

    Args:
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        num_classes: number of logits C.
        in_channels: input channels.
        image_size: input side in pixels (≥ 12).
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        self.config = image_model_config(
            "lenet", activation=activation, num_classes=num_classes, in_channels=in_channels,
            image_size=image_size, min_size=12,
        )  # fmt: skip
        side = (image_size // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.act1 = make_activation(activation)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.act2 = make_activation(activation)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.act3 = make_activation(activation)
        self.fc2 = nn.Linear(120, 84)
        self.act4 = make_activation(activation)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map images (N, in, H, W) to logits (N, C)."""
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        x = self.act3(self.fc1(self.flatten(x)))
        x = self.act4(self.fc2(x))
        return self.fc3(x)
