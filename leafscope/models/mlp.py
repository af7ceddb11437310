"""A fully connected classifier on flattened inputs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from leafscope.errors import InputError, check_positive_int
from leafscope.models.registry import make_activation, register_model


@register_model("mlp")
class MLP(nn.Module):
    """flatten → fc1 → act → … → fc{k} → act → fc{k+1}(·, C); optional dropout after each act.

    Args:
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        num_classes: number of logits C.
        in_channels: input channels.
        image_size: input side in pixels; the input size is in_channels·image_size².
        hidden: widths of the hidden layers (default (256, 128)).
        dropout: dropout probability after each hidden activation (default 0).
        in_features: flat input size; overrides in_channels·image_size² (for non-image data).
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        in_features: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        hidden = [check_positive_int(h, "each hidden width") for h in hidden]
        if not 0.0 <= float(dropout) < 1.0:
            raise InputError(f"dropout must be in [0, 1) (got {dropout!r})")
        if in_features is None:
            check_positive_int(in_channels, "in_channels")
            check_positive_int(image_size, "image_size")
            size = in_channels * image_size * image_size
        else:
            size = check_positive_int(in_features, "in_features")
        self.config = {
            "name": "mlp",
            "activation": activation,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": image_size,
            "hidden": list(hidden),
            "dropout": float(dropout),
            "in_features": in_features,
        }
        self.flatten = nn.Flatten()
        widths = [size, *hidden]
        for i in range(len(hidden)):
            setattr(self, f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))
            setattr(self, f"act{i + 1}", make_activation(activation))
            setattr(self, f"drop{i + 1}", nn.Dropout(dropout))
        setattr(self, f"fc{len(hidden) + 1}", nn.Linear(widths[-1], num_classes))
        self.depth = len(hidden) + 1

    def forward(self, x: Tensor) -> Tensor:
        """Map inputs (N, ...) with in_features elements per sample to logits (N, C)."""
        x = self.flatten(x)
        for i in range(1, self.depth):
            x = getattr(self, f"drop{i}")(getattr(self, f"act{i}")(getattr(self, f"fc{i}")(x)))
        return getattr(self, f"fc{self.depth}")(x)
