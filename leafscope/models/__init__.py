"""Models: LeNet-5, the data-manifold CNN, a CIFAR ResNet-18, a small VGG, an MLP and GCNs,
built by name with :func:`build_model` (or :func:`build_model_for_input` from a sample's shape).

Every model built here has a ``config`` dict such that ``build_model(**model.config)`` rebuilds it.
Any user ``nn.Module`` mapping a batch to logits (N, C) works with the analyses too;
:func:`load_model` (or :class:`ModelSpec`) loads leafscope checkpoints, TorchScript files, user
factories + weights, and Hugging Face / timm models by path or id (``hf:`` / ``timm:``,
:mod:`leafscope.models.hub`; text classifiers as :class:`TextClassifier`), keeping the user's own
layer and parameter names.
"""

from __future__ import annotations

from typing import Any

from leafscope.models.cnn import ManifoldCNN
from leafscope.models.lenet import LeNet5
from leafscope.models.loading import (
    ModelAdapter,
    ModelCallError,
    load_model,
    load_notes,
    load_weights,
    parse_normalize,
    unwrap,
)
from leafscope.models.mlp import MLP
from leafscope.models.registry import (
    ACTIVATIONS,
    build_model,
    build_model_for_input,
    model_names,
)
from leafscope.models.resnet import ResNet18
from leafscope.models.spec import ModelSpec
from leafscope.models.text import TextClassifier
from leafscope.models.vgg import SmallVGG

MODEL_NAMES: tuple[str, ...] = tuple(model_names())
# Models that ``leafscope train`` builds from the data's shape (mlp also takes vectors).
IMAGE_MODEL_NAMES: tuple[str, ...] = ("cnn", "lenet", "mlp", "resnet18", "vgg")

__all__ = [
    "ACTIVATIONS",
    "GCN",
    "GCNLinkPredictor",
    "IMAGE_MODEL_NAMES",
    "LeNet5",
    "MLP",
    "MODEL_NAMES",
    "ManifoldCNN",
    "ModelAdapter",
    "ModelCallError",
    "ModelSpec",
    "ResNet18",
    "SmallVGG",
    "TextClassifier",
    "build_model",
    "build_model_for_input",
    "load_model",
    "load_notes",
    "load_weights",
    "model_names",
    "parse_normalize",
    "unwrap",
]


def __getattr__(name: str) -> Any:
    # The graph models import torch_geometric, which is slow: load them on first use.
    if name in ("GCN", "GCNLinkPredictor"):
        from leafscope.models import gcn

        return getattr(gcn, name)
    raise AttributeError(f"module 'leafscope.models' has no attribute {name!r}")
