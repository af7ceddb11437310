"""Models: LeNet-5, the data-manifold CNN, an MLP and GCNs, built by name with :func:`build_model`.

Every model built here has a ``config`` dict such that ``build_model(**model.config)`` rebuilds it.
Any user ``nn.Module`` mapping a batch to logits (N, C) works with the analyses too.
"""

from __future__ import annotations

from typing import Any

from leafscope.models.cnn import ManifoldCNN
from leafscope.models.lenet import LeNet5
from leafscope.models.mlp import MLP
from leafscope.models.registry import ACTIVATIONS, build_model, model_names

MODEL_NAMES: tuple[str, ...] = tuple(model_names())
IMAGE_MODEL_NAMES: tuple[str, ...] = ("cnn", "lenet", "mlp")

__all__ = [
    "ACTIVATIONS",
    "GCN",
    "GCNLinkPredictor",
    "IMAGE_MODEL_NAMES",
    "LeNet5",
    "MLP",
    "MODEL_NAMES",
    "ManifoldCNN",
    "build_model",
    "model_names",
]


def __getattr__(name: str) -> Any:
    # The graph models import torch_geometric, which is slow: load them on first use.
    if name in ("GCN", "GCNLinkPredictor"):
        from leafscope.models import gcn

        return getattr(gcn, name)
    raise AttributeError(f"module 'leafscope.models' has no attribute {name!r}")
