"""Geometry of a model's features (NNK graphs, MGMs) and the pieces of the DeepNNK analysis.

The manifold graph metrics (MGMs) of the NNK graph of each requested layer's features, the last
hidden layer (the input of the last ``nn.Linear``, whose features the DeepNNK leave-one-out
classifier uses), the leave-one-out error itself and the Pearson correlation of LOO and test
error across epochs; :class:`RunGeometry` holds them for the checkpoints of a run (the ``nnk``
task computes them one checkpoint and layer at a time).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.models.features import layer_features
from leafscope.models.inspect import module_names, resolve_modules
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.metrics import manifold_graph_metrics

__all__ = [
    "EpochGeometry",
    "RunGeometry",
    "last_hidden_layer",
    "layer_geometry",
    "loo_error",
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


def loo_error(
    feats: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    kernel: str = "cosine",
    device: str | torch.device = "cpu",
) -> float:
    """DeepNNK leave-one-out error of the NNK interpolation classifier on (N, ...) features
    (flattened per point; k capped at N − 1): each point is classified by the weighted vote of
    its NNK neighbours among the others (a point's own solve excludes it).

    Returns:
        The error rate in [0, 1].

    Raises:
        InputError: fewer than 3 points, or one label per point missing.
    """
    from leafscope.nnk.interpolation import NNKClassifier

    n = feats.shape[0]
    if n < 3:
        raise InputError(f"need at least 3 points for an NNK graph, got {n}: pass more images")
    if len(labels) != n:
        raise InputError(f"{n} feature rows but {len(labels)} labels: one label per point")
    clf = NNKClassifier(k=min(k, n - 1), kernel=kernel, device=str(device))
    return float(clf.fit(feats.reshape(n, -1), labels).loo_error_)


def last_hidden_layer(model: nn.Module) -> str:
    """Name of the leaf module whose output feeds the last ``nn.Linear`` (registration order),
    as :func:`leafscope.models.inspect.module_names` names it (a loaded user model's own
    names).

    Raises:
        InputError: the model has no ``nn.Linear`` with a module before it.
    """
    names = module_names(model)
    modules = resolve_modules(model, names) if names else {}
    leaves = [n for n in names if not any(True for _ in modules[n].children())]
    linear = [i for i, n in enumerate(leaves) if _is_linear(modules[n])]
    if not linear or linear[-1] == 0:
        raise InputError(
            "cannot find the last hidden layer (no nn.Linear after another module): pass "
            f"loo_layer explicitly, one of {names[:12]}"
        )
    return leaves[linear[-1] - 1]


def _is_linear(module: nn.Module) -> bool:
    """An ``nn.Linear``, eager or compiled to TorchScript (which keeps its original name)."""
    return isinstance(module, nn.Linear) or getattr(module, "original_name", None) == "Linear"


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


@dataclass
class EpochGeometry:
    """Geometry of one checkpoint: ``layers`` maps a layer to its MGM summary (see
    :func:`mgm_summary`); errors in [0, 1] (None when not measured)."""

    epoch: int
    step: int
    checkpoint: str
    layers: dict[str, Any]
    loo_error: float | None
    test_error: float | None = None
    val_accuracy: float | None = None


@dataclass
class RunGeometry:
    """Geometry of a run across its checkpoints (oldest first).

    Attributes:
        run_dir: the run folder (or a description of the models measured).
        layers: the layers with MGMs; loo_layer: the layer of the LOO classifier (None: no LOO).
        k, kernel: NNK settings; n_points: points measured.
        epochs: one :class:`EpochGeometry` per checkpoint.
    """

    run_dir: str
    layers: list[str]
    loo_layer: str | None
    k: int
    kernel: str
    n_points: int
    epochs: list[EpochGeometry] = field(default_factory=list)

    @property
    def loo_errors(self) -> list[float | None]:
        return [e.loo_error for e in self.epochs]

    @property
    def test_errors(self) -> list[float | None]:
        return [e.test_error for e in self.epochs]

    @property
    def pearson(self) -> float | None:
        """Pearson r of LOO vs test error over the epochs with both (None if fewer than 3)."""
        pairs = [
            (e.loo_error, e.test_error)
            for e in self.epochs
            if e.test_error is not None and e.loo_error is not None
        ]
        if len(pairs) < 3:
            return None
        return loo_test_correlation([p[0] for p in pairs], [p[1] for p in pairs])

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["pearson_loo_vs_test"] = self.pearson
        return out

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunGeometry:
        """The geometry :meth:`to_json` wrote (its Pearson r is recomputed)."""
        fields = {k: record[k] for k in ("run_dir", "layers", "loo_layer", "k", "kernel")}
        return cls(
            **fields,
            n_points=int(record["n_points"]),
            epochs=[EpochGeometry(**e) for e in record["epochs"]],
        )
