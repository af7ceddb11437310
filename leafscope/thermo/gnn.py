"""One seed of the GCN input-feature temperature experiment on Planetoid (theory §4).

Per seed: train a 2-layer GCN with :func:`leafscope.training.fit` (full batch: one Adam step per
epoch) with a :class:`TemperatureMonitor` on the input features of ``conv1`` (column j of
``conv1.lin.weight``), averaged over all training steps; then zero a growing fraction of input
features (no retraining) chosen by

- ``cold``: lowest temperature first;       ``hot``: highest temperature first;
- ``random``: seeded random order;           ``magnitude``: smallest column L1 norm first;
- ``rarest``: fewest nodes with the feature first (the baseline a cold ranking must beat);

and score the test accuracy (node classification, public Planetoid split) or the test AUROC
(link prediction, seeded ``RandomLinkSplit`` 85/5/10, dot-product decoder), as fractions in
[0, 1]. The drivers are :func:`leafscope.experiments.thermo.run_gnn_experiment` (percent, any
executor) and the ``thermo-gnn`` task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.thermo.monitor import TemperatureMonitor
from leafscope.thermo.pruning import (
    feature_frequency,
    magnitude_scores,
    masked,
    random_scores,
    select_groups,
)
from leafscope.thermo.seeding import holds_global_rng
from leafscope.thermo.tables import spearman, validate_seeds

__all__ = [
    "CRITERIA",
    "DEFAULT_RATIOS",
    "LAYER",
    "PUBLISHED_CURVE",
    "TASKS",
    "check_gnn_args",
    "gnn_seed",
]

DEFAULT_RATIOS = (0, 7, 14, 28, 35, 42, 63, 70, 88, 95)
CRITERIA = ("cold", "hot", "random", "magnitude", "rarest")
TASKS = ("node", "link")
LAYER = "conv1"
#: The published cold / hot curve (theory §4): test accuracy in percent on Cora.
PUBLISHED_CURVE = {
    "ratio": [0, 7, 14, 28, 35, 42, 63, 70, 88, 95],
    "cold": [95.18, 95.14, 95.12, 95.11, 95.07, 95.00, 94.66, 94.44, 92.43, 86.03],
    "hot": [95.18, 84.36, 78.17, 67.12, 63.28, 61.08, 55.70, 55.00, 51.31, 50.46],
}


def _node_metric(data: Any) -> Callable[[nn.Module], float]:
    """Test accuracy (fraction) on the public split's ``test_mask``."""

    @torch.no_grad()
    def metric(m: nn.Module) -> float:
        m.eval()
        pred = m(data.x, data.edge_index).argmax(dim=1)
        mask = data.test_mask
        return float((pred[mask] == data.y[mask]).float().mean())

    return metric


def _link_metric(test: Any) -> Callable[[nn.Module], float]:
    """Test AUROC (fraction) of the dot-product decoder on the held-out positive/negative
    pairs."""
    from sklearn.metrics import roc_auc_score

    @torch.no_grad()
    def metric(m: nn.Module) -> float:
        m.eval()
        z = m(test.x, test.edge_index)
        scores = m.decode(z, test.edge_label_index).sigmoid().cpu().numpy()
        return float(roc_auc_score(test.edge_label.cpu().numpy(), scores))

    return metric


@contextlib.contextmanager
def _python_random_of_pyg(seed: int) -> Iterator[None]:
    """PyG draws the held-out non-edges with Python's ``random``. Seeding the process-wide
    generator is not enough where other threads use it too (a threaded Dask worker: the
    scheduler draws from it), so PyG's sampler gets a private ``random.Random(seed)``, which
    gives the same draws as ``random.seed(seed)`` in a process of its own."""
    import random

    try:
        from torch_geometric.utils import _negative_sampling as sampler
    except ImportError:  # another PyG layout: seed the process-wide generator
        random.seed(seed)
        yield
        return
    if not hasattr(sampler, "random"):
        random.seed(seed)
        yield
        return
    shared, sampler.random = sampler.random, random.Random(seed)
    try:
        yield
    finally:
        sampler.random = shared


def _train_seed(
    task: str, data: Any, seed: int, epochs: int, lr: float, wd: float, device: torch.device
) -> tuple[nn.Module, TemperatureMonitor, Callable[[nn.Module], float]]:
    """Build and train one GCN with :func:`leafscope.training.fit` (full batch, Adam).

    One optimizer step per epoch; the monitor records every step. Link prediction: seeded
    ``RandomLinkSplit`` (85/5/10), BCE against as many resampled non-edges per step.
    """
    from leafscope.models import build_model
    from leafscope.training import fit, link_prediction_loss

    torch.manual_seed(seed)
    n_features = int(data.x.shape[1])
    if task == "node":
        num_classes = int(data.y.max()) + 1
        model = build_model("gcn", in_channels=n_features, num_classes=num_classes, hidden=16)
    else:
        model = build_model("gcn-link", in_channels=n_features)
    monitor = TemperatureMonitor({LAYER: "features"})
    settings = dict(epochs=epochs, optimizer="adam", lr=lr, weight_decay=wd, seed=seed,
                    device=device, progress=False)  # fmt: skip
    if task == "node":
        fit(model, data, None, callbacks=[monitor], **settings)
        metric = _node_metric(data)
    else:
        from torch_geometric.transforms import RandomLinkSplit

        split = RandomLinkSplit(
            num_val=0.05, num_test=0.1, is_undirected=True, add_negative_train_samples=False
        )
        with _python_random_of_pyg(seed):
            train, _, test = split(data)
        fit(model, train, None, callbacks=[monitor], loss_fn=link_prediction_loss, **settings)
        metric = _link_metric(test)
    model.eval()
    return model, monitor, metric


def check_gnn_args(
    task: str, seeds: int, ratios: Any, epochs: int | None, weight_decay: float | None
) -> tuple[list[int], int, float]:
    """Validated seed list, epochs and weight decay (task defaults filled in: 200 epochs and
    5e-4 for ``node``, 300 and 0 for ``link``)."""
    seed_list = validate_seeds(seeds)
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}: use 'node' or 'link'")
    bad = [r for r in ratios if not 0 <= float(r) <= 100]
    if bad or not ratios:
        raise InputError(f"pruning ratios must be percentages in [0, 100], got {list(ratios)}")
    epochs = epochs if epochs is not None else (200 if task == "node" else 300)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be a positive integer, got {epochs!r}")
    wd = weight_decay if weight_decay is not None else (5e-4 if task == "node" else 0.0)
    return seed_list, epochs, wd


def _prune_seed(
    model: nn.Module,
    monitor: TemperatureMonitor,
    metric: Callable[[nn.Module], float],
    freq: torch.Tensor,
    ratios: Sequence[float],
    seed: int,
) -> tuple[dict[tuple[str, float], float], dict[str, Any]]:
    """Score every (criterion, ratio) of one trained model; its record."""
    n_features = int(freq.numel())
    temp = monitor.temperatures(window=None)[LAYER]
    scores = {
        "cold": (temp, "lowest"),
        "hot": (temp, "highest"),
        "random": (random_scores(n_features, 1000 + seed), "highest"),
        "magnitude": (magnitude_scores(model, LAYER, "features"), "lowest"),
        "rarest": (freq, "lowest"),
    }
    base = metric(model)
    values: dict[tuple[str, float], float] = {}
    for criterion, (s, end) in scores.items():
        for ratio in ratios:
            k = int(round(float(ratio) / 100.0 * n_features))
            with masked(model, LAYER, select_groups(s, k, "remove", end), "features"):
                value = metric(model)
            values[(criterion, float(ratio))] = value
    half = n_features // 2
    cold_set = set(select_groups(temp, half, "remove", "lowest"))
    rare_set = set(select_groups(freq, half, "remove", "lowest"))
    record = {
        "seed": seed,
        "metric_before_pruning": base,
        "temperatures": temp.tolist(),
        "spearman_temperature_vs_frequency": spearman(temp, freq),
        "spearman_temperature_vs_magnitude": spearman(temp, scores["magnitude"][0]),
        "overlap_coldest_half_rarest_half": len(cold_set & rare_set) / max(half, 1),
        "temperature_min_max": [float(temp.min()), float(temp.max())],
        "optimizer": monitor.history().optimizer,
    }
    return values, record


@holds_global_rng
def gnn_seed(
    task: str,
    data: Any,
    seed: int,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    ratios: Sequence[float],
    device: str | torch.device = "cpu",
) -> tuple[dict[tuple[str, float], float], dict[str, Any]]:
    """Train and prune one seed.

    Args:
        task: ``"node"`` (classification, hidden 16, dropout 0.5) or ``"link"`` (prediction,
            hidden 128, embedding 64).
        data: a ``torch_geometric`` ``Data`` graph (Planetoid: public split masks).
        seed: the seed of the initialisation, the link split and the random control.
        epochs, lr, weight_decay: full-batch Adam training.
        ratios: pruning ratios in percent of the input features.
        device: torch device.

    Returns:
        ``({(criterion, ratio): metric}, record)``: the metric (accuracy or AUROC, a fraction)
        after pruning, and the seed's record (metric before pruning, the temperature of every
        input feature, rank correlations with feature frequency and column magnitude, overlap
        of the coldest and rarest halves).
    """
    device = torch.device(device)
    data = data.to(device)
    freq = feature_frequency(data.x)
    model, monitor, metric = _train_seed(task, data, seed, epochs, lr, weight_decay, device)
    return _prune_seed(model, monitor, metric, freq, ratios, seed)
