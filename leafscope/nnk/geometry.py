"""Geometry of a model's features across layers and epochs (NNK graphs, MGMs, DeepNNK LOO).

For every epoch checkpoint of a run: the manifold graph metrics (MGMs) of the NNK graph of each
requested layer's features, the DeepNNK leave-one-out (LOO) error of the NNK interpolation
classifier on the training features of the last hidden layer (the input of the last
``nn.Linear``; a point's own solve excludes it), and the test error. The Pearson correlation of
LOO and test error across epochs says whether LOO tracks generalisation without held-out data.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leafscope.errors import CheckpointError, InputError
from leafscope.nnk.features import extract_features, layer_names
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.interpolation import NNKClassifier
from leafscope.nnk.metrics import manifold_graph_metrics

__all__ = [
    "EpochGeometry",
    "RunGeometry",
    "last_hidden_layer",
    "layer_geometry",
    "loo_test_correlation",
    "run_geometry",
]

METRICS = ("n_neighbors", "diameter", "local_dim", "orientation")


def _mgm_summary(
    feats: torch.Tensor, k: int, kernel: str, orientation: bool = True
) -> dict[str, Any]:
    n = feats.shape[0]
    if n < 3:
        raise InputError(f"need at least 3 points for an NNK graph, got {n}: pass more images")
    graph = NNKGraph(k=min(k, n - 1), kernel=kernel).fit(feats.reshape(n, -1))
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
        layers: names from :func:`leafscope.nnk.layer_names`.
        k: kNN candidates per node (capped at N − 1). kernel: ``"cosine"`` or ``"gaussian"``.
        per_channel: one graph per channel of a (N, C, ...) output.
        orientation: also compute the orientation MGM (the costly one: about 3 s for 1000
            points of dimension 4704 on one core; None in the summary when off).
        device: where the forward passes run.

    Returns:
        ``{layer: summary}`` (see :func:`leafscope.nnk.summarize`); with ``per_channel``,
        ``{layer: {"channels": [summary per channel]}}``.
    """
    feats = extract_features(model, images, layers, per_channel=per_channel, device=device)
    out: dict[str, Any] = {}
    for name in layers:
        f = feats[name]
        if per_channel and f.ndim == 3:
            out[name] = {
                "channels": [
                    _mgm_summary(f[:, c], k, kernel, orientation) for c in range(f.shape[1])
                ]
            }
        else:
            out[name] = _mgm_summary(f, k, kernel, orientation)
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
            f"loo_layer explicitly, one of {layer_names(model)[:12]}"
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


@dataclass
class EpochGeometry:
    """Geometry of one checkpoint: ``layers`` maps a layer to its MGM summary; errors in [0, 1]."""

    epoch: int
    step: int
    checkpoint: str
    layers: dict[str, Any]
    loo_error: float
    test_error: float | None = None
    val_accuracy: float | None = None


@dataclass
class RunGeometry:
    """Geometry of a run across its epoch checkpoints (oldest first)."""

    run_dir: str
    layers: list[str]
    loo_layer: str
    k: int
    kernel: str
    n_points: int
    epochs: list[EpochGeometry] = field(default_factory=list)

    @property
    def loo_errors(self) -> list[float]:
        return [e.loo_error for e in self.epochs]

    @property
    def test_errors(self) -> list[float | None]:
        return [e.test_error for e in self.epochs]

    @property
    def pearson(self) -> float | None:
        """Pearson r of LOO vs test error over the epochs with a test error (None if < 3)."""
        pairs = [(e.loo_error, e.test_error) for e in self.epochs if e.test_error is not None]
        if len(pairs) < 3:
            return None
        return loo_test_correlation([p[0] for p in pairs], [p[1] for p in pairs])

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["pearson_loo_vs_test"] = self.pearson
        return out


def run_geometry(
    run_dir: str | os.PathLike,
    images: torch.Tensor,
    labels: torch.Tensor,
    layers: list[str],
    *,
    k: int = 15,
    kernel: str = "cosine",
    test_images: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
    loo_layer: str | None = None,
    loo_k: int | None = None,
    include_initial: bool = False,
    orientation: bool = True,
    step_checkpoints: bool = False,
    device: str | torch.device = "cpu",
) -> RunGeometry:
    """MGMs per layer, DeepNNK LOO error and test error for every epoch checkpoint of a run.

    Args:
        run_dir: folder of ``epoch_NNNN.pt`` files (``leafscope train --out``).
        images, labels: (N, ...) training inputs and (N,) labels the geometry is measured on.
        layers: layer names for the MGMs.
        k, kernel: NNK graph settings (MGMs; also the LOO classifier unless ``loo_k``).
        test_images, test_labels: held-out set for the test error (optional).
        loo_layer: layer whose features the LOO classifier uses (default: last hidden layer).
        include_initial: also measure epoch 0 (the initial weights).
        orientation: also compute the orientation MGM (see :func:`layer_geometry`).
        step_checkpoints: also measure the ``step_NNNNNNNN.pt`` checkpoints (finer than epochs;
            the figures then use the optimizer step as their x axis).
        device: where the forward passes run.

    Returns:
        :class:`RunGeometry`.

    Raises:
        CheckpointError: no epoch checkpoint in ``run_dir``. InputError: bad layer names.
    """
    from leafscope.training import evaluate, list_checkpoints, load_checkpoint

    if (test_images is None) != (test_labels is None):
        raise InputError("pass both test_images and test_labels, or neither")
    if len(images) != len(labels):
        raise InputError(f"{len(images)} images but {len(labels)} labels: one label per image")
    kinds = ("epoch", "step") if step_checkpoints else ("epoch",)
    infos = [i for i in list_checkpoints(run_dir) if i.kind in kinds]
    infos = [i for i in infos if include_initial or i.step > 0]
    # a step checkpoint written at an epoch's end holds the same weights as the epoch one
    epoch_steps = {i.step for i in infos if i.kind == "epoch"}
    infos = [i for i in infos if i.kind == "epoch" or i.step not in epoch_steps]
    if not infos:
        raise CheckpointError(
            f"no epoch checkpoints (epoch_NNNN.pt, epoch >= 1) in {run_dir}: train the run first"
        )
    result: RunGeometry | None = None
    for info in infos:
        model = load_checkpoint(info.path, device=device)
        hidden = loo_layer or last_hidden_layer(model)
        wanted = list(dict.fromkeys([*layers, hidden]))
        feats = extract_features(model, images, wanted, device=device)
        summaries = {name: _mgm_summary(feats[name], k, kernel, orientation) for name in layers}
        clf = NNKClassifier(k=min(loo_k or k, len(images) - 1), kernel=kernel)
        loo = clf.fit(feats[hidden], labels).loo_error_
        test_error = None
        if test_images is not None:
            test_error = 1.0 - evaluate(model, (test_images, test_labels), device=device)[1]
        if result is None:
            result = RunGeometry(str(Path(run_dir)), list(layers), hidden, k, kernel, len(images))
        result.epochs.append(
            EpochGeometry(
                info.epoch, info.step, str(info.path), summaries, loo, test_error, info.val_accuracy
            )
        )
    assert result is not None
    return result
