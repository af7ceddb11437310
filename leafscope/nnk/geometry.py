"""Geometry of a model's features (NNK graphs, MGMs) and the pieces of the DeepNNK analysis.

The manifold graph metrics (MGMs) of the NNK graph of each requested layer's features, the last
hidden layer (the input of the last ``nn.Linear``, whose features the DeepNNK leave-one-out
classifier uses) and the Pearson correlation of LOO and test error across epochs. The run across
checkpoints is :func:`leafscope.experiments.nnk.run_geometry`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.models.features import layer_features
from leafscope.models.inspect import module_names
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.metrics import manifold_graph_metrics

__all__ = [
    "last_hidden_layer",
    "layer_geometry",
    "loo_test_correlation",
    "mgm_summary",
]

METRICS = ("n_neighbors", "diameter", "local_dim", "orientation")


def mgm_summary(
    feats: torch.Tensor,
    k: int,
    kernel: str,
    orientation: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """MGM summary of the NNK graph of (N, ...) features (flattened per point; k capped at N − 1).

    Args:
        device: where the NNK kernels and solves run (``"cuda"`` or ``"cpu"``).

    Returns:
        The JSON summary of :func:`leafscope.nnk.manifold_graph_metrics`.

    Raises:
        InputError: fewer than 3 points.
    """
    n = feats.shape[0]
    if n < 3:
        raise InputError(f"need at least 3 points for an NNK graph, got {n}: pass more images")
    graph = NNKGraph(k=min(k, n - 1), kernel=kernel, device=str(device)).fit(feats.reshape(n, -1))
    return manifold_graph_metrics(graph, orientation=orientation).to_json()


def layer_geometry(
    model: nn.Module,
    images: torch.Tensor,
    layers: list[str],
    *,
    k: int = 15,
    kernel: str = "cosine",
    per_channel: bool = False,
    orientation: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """MGM summaries of the NNK graph of each layer's features.

    Args:
        model: any ``nn.Module``; images: (N, ...) inputs.
        layers: names from :func:`leafscope.models.inspect.module_names`.
        k: kNN candidates per node (capped at N − 1). kernel: ``"cosine"`` or ``"gaussian"``.
        per_channel: one graph per channel of a (N, C, ...) output.
        orientation: also compute the orientation MGM (the costly one: about 3 s for 1000
            points of dimension 4704 on one core; None in the summary when off).
        device: where the forward passes and the NNK solves run.

    Returns:
        ``{layer: summary}`` (see :func:`leafscope.nnk.summarize`); with ``per_channel``,
        ``{layer: {"channels": [summary per channel]}}``.
    """
    feats = layer_features(
        model, images, layers, shape="channels" if per_channel else "flat", device=device
    )
    out: dict[str, Any] = {}
    for name in layers:
        f = feats[name]
        if per_channel and f.ndim == 3:
            out[name] = {
                "channels": [
                    mgm_summary(f[:, c], k, kernel, orientation, device) for c in range(f.shape[1])
                ]
            }
        else:
            out[name] = mgm_summary(f, k, kernel, orientation, device)
    return out


def last_hidden_layer(model: nn.Module) -> str:
    """Name of the leaf module whose output feeds the last ``nn.Linear`` (registration order).

    Raises:
        InputError: the model has no ``nn.Linear`` with a module before it.
    """
    leaves = [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    modules = dict(model.named_modules())
    linear = [i for i, n in enumerate(leaves) if isinstance(modules[n], nn.Linear)]
    if not linear or linear[-1] == 0:
        raise InputError(
            "cannot find the last hidden layer (no nn.Linear after another module): pass "
            f"loo_layer explicitly, one of {module_names(model)[:12]}"
        )
    return leaves[linear[-1] - 1]


def loo_test_correlation(loo: list[float], test: list[float]) -> float | None:
    """Pearson correlation of LOO and test errors across epochs.

    Returns:
        r in [−1, 1], or None with fewer than 3 epochs or a constant series.
    """
    from scipy.stats import pearsonr

    if len(loo) != len(test):
        raise InputError(f"got {len(loo)} LOO errors but {len(test)} test errors: one per epoch")
    a, b = np.asarray(loo, dtype=float), np.asarray(test, dtype=float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(pearsonr(a, b)[0])
