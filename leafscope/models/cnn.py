"""The MNIST CNN of the model-centric data manifold papers (Tron & Fioresi)."""

from __future__ import annotations

from torch import Tensor, nn

from leafscope.models.registry import (
    image_model_config,
    make_activation,
    register_model,
)


@register_model("cnn")
class ManifoldCNN(nn.Module):
    """conv1(in,32,3) → act → conv2(32,64,3) → act → pool2 → fc1(64·s², 128) → act → fc2(128, C).

    With 28×28 inputs s = 12 and ``fc1`` is Linear(9216, 128).

    Args:
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        num_classes: number of logits C.
        in_channels: input channels.
        image_size: input side in pixels (≥ 6).
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
            "cnn", activation=activation, num_classes=num_classes, in_channels=in_channels,
            image_size=image_size, min_size=6,
        )  # fmt: skip
        side = (image_size - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, 32, 3)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.act2 = make_activation(activation)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.act3 = make_activation(activation)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map images (N, in, H, W) to logits (N, C)."""
        x = self.act1(self.conv1(x))
        x = self.pool(self.act2(self.conv2(x)))
        x = self.act3(self.fc1(self.flatten(x)))
        return self.fc2(x)
