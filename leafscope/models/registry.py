"""Model registry: names → constructors, and the activation table shared by every model."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from leafscope.errors import InputError, check_positive_int

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# Models whose module is imported on first use (torch_geometric is slow to import).
_LAZY: dict[str, str] = {"gcn": "leafscope.models.gcn", "gcn-link": "leafscope.models.gcn"}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator adding a model to :func:`build_model` under ``name``."""

    def wrap(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[name] = cls
        return cls

    return wrap


def make_activation(name: str) -> nn.Module:
    """A fresh (non-inplace) activation module for ``name`` in ``ACTIVATIONS``.

    Raises:
        InputError: the name is unknown; the message lists the valid ones.
    """
    if name not in ACTIVATIONS:
        raise InputError(
            f"unknown activation {name!r}: use one of {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name]()


def image_model_config(
    name: str,
    *,
    activation: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    min_size: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    """Check the settings every image model shares and return its ``config`` dict.

    Args:
        name: the registered model name (stored as ``config["name"]``).
        activation, num_classes, in_channels, image_size: the model's settings.
        min_size: smallest input side (pixels) the architecture accepts.
        **extra: further settings stored in the config as they are.

    Returns:
        ``{"name", "activation", "num_classes", "in_channels", "image_size", **extra}``,
        which ``build_model(**config)`` turns back into the model.

    Raises:
        InputError: a setting is not a positive integer, or ``image_size < min_size``.
    """
    check_positive_int(num_classes, "num_classes")
    check_positive_int(in_channels, "in_channels")
    check_positive_int(image_size, "image_size")
    if image_size < min_size:
        raise InputError(
            f"{name} needs image_size >= {min_size} (got {image_size}): use larger images"
        )
    return {
        "name": name,
        "activation": activation,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": image_size,
        **extra,
    }


def model_names() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(set(_BUILDERS) | set(_LAZY))


def build_model(
    name: str,
    *,
    activation: str = "relu",
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; ``build_model(**model.config)`` rebuilds the same architecture.

    Args:
        name: one of ``MODEL_NAMES`` (``lenet``, ``cnn``, ``mlp``, ``resnet18``, ``vgg``, ``gcn``,
            ``gcn-link``).
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        num_classes: number of logits C (for ``gcn-link``: ignored, see ``embedding_dim``).
        in_channels: image channels (for the graph models: node feature count).
        image_size: side of the square input image in pixels (ignored by graph models).
        **kwargs: model-specific options (``hidden``, ``dropout``, ...).

    Returns:
        The model (train mode, random weights) with a JSON-able ``config`` dict attribute.

    Raises:
        InputError: unknown name, activation or option.

    Examples:
        >>> import torch
        >>> model = build_model("mlp", hidden=(16,), num_classes=3, image_size=8)
        >>> model(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 3])
        >>> type(build_model(**model.config)) is type(model)
        True
    """
    if name not in _BUILDERS and name in _LAZY:
        importlib.import_module(_LAZY[name])
    if name not in _BUILDERS:
        raise InputError(f"unknown model {name!r}: use one of {', '.join(model_names())}")
    if activation not in ACTIVATIONS:
        raise InputError(
            f"unknown activation {activation!r}: use one of {', '.join(sorted(ACTIVATIONS))}"
        )
    try:
        return _BUILDERS[name](
            activation=activation,
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            **kwargs,
        )
    except TypeError as exc:
        raise InputError(f"bad option for model {name!r}: {exc}") from exc


# Models that take images (N, C, H, W) and need square ones (their fc size depends on the side).
_SQUARE_ONLY = ("cnn", "lenet")
_VECTOR_MODELS = ("mlp",)


def build_model_for_input(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    activation: str = "relu",
    **kwargs: Any,
) -> nn.Module:
    """Build a registered image or vector model for data of one sample's shape.

    Args:
        name: ``lenet``, ``cnn``, ``resnet18``, ``vgg`` (images) or ``mlp`` (images or vectors).
        input_shape: one sample's shape: ``(C, H, W)`` for images, ``(D,)`` for vectors.
        num_classes: number of logits C.
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        **kwargs: model-specific options (``hidden``, ``widths``, ...).

    Returns:
        The model (train mode, random weights); ``build_model(**model.config)`` rebuilds it.

    Raises:
        InputError: an unknown name, a shape the model cannot take (e.g. vectors for a CNN, or
        non-square images for ``lenet``/``cnn``), or a bad option.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape) or len(shape) not in (1, 3):
        raise InputError(
            f"input_shape must be (C, H, W) for images or (D,) for vectors (got {input_shape!r})"
        )
    if len(shape) == 1:
        if name not in _VECTOR_MODELS:
            raise InputError(
                f"model {name!r} needs images (C, H, W) but the data are vectors of size "
                f"{shape[0]}: use `model=mlp`"
            )
        return build_model(
            name, activation=activation, num_classes=num_classes, in_features=shape[0], **kwargs
        )
    channels, height, width = shape
    if name in _VECTOR_MODELS and height != width:
        kwargs = {"in_features": channels * height * width, **kwargs}
    if name in _SQUARE_ONLY and height != width:
        raise InputError(
            f"model {name!r} needs square images (got {height}×{width}): crop or resize the "
            "images, or use resnet18 or vgg (any size)"
        )
    return build_model(
        name,
        activation=activation,
        num_classes=num_classes,
        in_channels=channels,
        image_size=min(height, width),
        **kwargs,
    )
