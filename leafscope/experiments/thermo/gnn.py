"""GCN on Planetoid: temperature of the input features and the pruning curves (theory §4).

Per seed: train a 2-layer GCN with :func:`leafscope.training.fit` (full batch: one Adam step
per epoch) with a :class:`TemperatureMonitor` on the input features of ``conv1`` (column j of
``conv1.lin.weight``), averaged over all training steps; then zero a growing fraction of input
features (no retraining) chosen by

- ``cold``: lowest temperature first;       ``hot``: highest temperature first;
- ``random``: seeded random order;           ``magnitude``: smallest column L1 norm first;
- ``rarest``: fewest nodes with the feature first (the baseline a cold ranking must beat);

and report test accuracy (node classification, public Planetoid split) or test AUROC (link
prediction, seeded ``RandomLinkSplit`` 85/5/10, dot-product decoder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.execution import Executor
from leafscope.experiments.tasks import Source, map_units, resolve, seeded
from leafscope.experiments.thermo.common import mean_std, spearman, validate_seeds
from leafscope.thermo.monitor import TemperatureMonitor
from leafscope.thermo.pruning import (
    feature_frequency,
    magnitude_scores,
    masked,
    random_scores,
    select_groups,
)

DEFAULT_RATIOS = (0, 7, 14, 28, 35, 42, 63, 70, 88, 95)
CRITERIA = ("cold", "hot", "random", "magnitude", "rarest")
LAYER = "conv1"
PUBLISHED_CURVE = {
    "ratio": [0, 7, 14, 28, 35, 42, 63, 70, 88, 95],
    "cold": [95.18, 95.14, 95.12, 95.11, 95.07, 95.00, 94.66, 94.44, 92.43, 86.03],
    "hot": [95.18, 84.36, 78.17, 67.12, 63.28, 61.08, 55.70, 55.00, 51.31, 50.46],
}


@dataclass
class CurvePoint:
    """Metric (percent) after pruning ``ratio`` % of the input features by ``criterion``."""

    criterion: str
    ratio: float
    metric_mean: float
    metric_std: float
    values: list[float] = field(default_factory=list)


@dataclass
class GnnThermoResult:
    """Outcome of :func:`run_gnn_experiment`.

    Attributes:
        config: dataset, task, training settings.
        metric: ``"accuracy"`` (node) or ``"auroc"`` (link), in percent.
        curves: one :class:`CurvePoint` per (criterion, ratio).
        per_seed: per seed: metric before pruning, rank correlations of temperature with
            feature frequency and column magnitude, overlap of cold and rare sets.
        published: the published cold/hot curve (theory §4).
    """

    config: dict[str, Any]
    metric: str
    curves: list[CurvePoint]
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    published: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)

    def point(self, criterion: str, ratio: float) -> CurvePoint:
        """The curve point for ``criterion`` at ``ratio`` percent."""
        for p in self.curves:
            if p.criterion == criterion and p.ratio == ratio:
                return p
        raise InputError(f"no point ({criterion!r}, {ratio}): criteria {CRITERIA}")


def _node_metric(data: Any) -> Callable[[nn.Module], float]:
    """Test accuracy (percent) on the public split's ``test_mask``."""

    @torch.no_grad()
    def metric(m: nn.Module) -> float:
        m.eval()
        pred = m(data.x, data.edge_index).argmax(dim=1)
        mask = data.test_mask
        return 100.0 * float((pred[mask] == data.y[mask]).float().mean())

    return metric


def _link_metric(test: Any) -> Callable[[nn.Module], float]:
    """Test AUROC (percent) of the dot-product decoder on the held-out positive/negative pairs."""
    from sklearn.metrics import roc_auc_score

    @torch.no_grad()
    def metric(m: nn.Module) -> float:
        m.eval()
        z = m(test.x, test.edge_index)
        scores = m.decode(z, test.edge_label_index).sigmoid().cpu().numpy()
        return 100.0 * float(roc_auc_score(test.edge_label.cpu().numpy(), scores))

    return metric


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
        import random

        from torch_geometric.transforms import RandomLinkSplit

        random.seed(seed)  # PyG draws the held-out non-edges with Python's own generator
        split = RandomLinkSplit(
            num_val=0.05, num_test=0.1, is_undirected=True, add_negative_train_samples=False
        )
        train, _, test = split(data)
        fit(model, train, None, callbacks=[monitor], loss_fn=link_prediction_loss, **settings)
        metric = _link_metric(test)
    model.eval()
    return model, monitor, metric


def _check_gnn_args(
    task: str, seeds: int, ratios: Any, epochs: int | None, weight_decay: float | None
) -> tuple[list[int], int, float]:
    """Validated seed list, epochs and weight decay (task defaults filled in)."""
    seed_list = validate_seeds(seeds)
    if task not in ("node", "link"):
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
    ratios: Any,
    seed: int,
    per_ratio: dict[tuple[str, float], float],
) -> dict[str, Any]:
    """Score every (criterion, ratio) of one trained model into ``per_ratio``; its record."""
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
    for criterion, (s, end) in scores.items():
        for ratio in ratios:
            k = int(round(float(ratio) / 100.0 * n_features))
            with masked(model, LAYER, select_groups(s, k, "remove", end), "features"):
                value = metric(model)
            per_ratio[(criterion, float(ratio))] = value
    half = n_features // 2
    cold_set = set(select_groups(temp, half, "remove", "lowest"))
    rare_set = set(select_groups(freq, half, "remove", "lowest"))
    return {
        "seed": seed,
        "metric_before_pruning": base,
        "spearman_temperature_vs_frequency": spearman(temp, freq),
        "spearman_temperature_vs_magnitude": spearman(temp, scores["magnitude"][0]),
        "overlap_coldest_half_rarest_half": len(cold_set & rare_set) / max(half, 1),
        "temperature_min_max": [float(temp.min()), float(temp.max())],
        "optimizer": monitor.history().optimizer,
    }


def _planetoid(name: str, data_dir: str | None) -> Any:
    """The Planetoid set ``name`` (a top-level data source for the workers)."""
    from leafscope.data.planetoid import load_planetoid

    return load_planetoid(name, data_dir=data_dir)


@dataclass(frozen=True)
class GnnSeedTask:
    """One seed of :func:`run_gnn_experiment` (``data``: a ``torch_geometric`` ``Data`` or a
    :class:`~leafscope.experiments.tasks.Source` of it)."""

    task: str
    data: Any
    seed: int
    epochs: int
    lr: float
    weight_decay: float
    ratios: tuple
    device: str


def gnn_seed(task: GnnSeedTask) -> tuple[dict[tuple[str, float], float], dict[str, Any]]:
    """Train and prune one seed: ``({(criterion, ratio): metric %}, record)`` (a top-level
    task for any executor)."""
    from leafscope.execution import worker_device

    device = worker_device(task.device)
    data = resolve(task.data).to(device)
    freq = feature_frequency(data.x)
    values: dict[tuple[str, float], float] = {}
    with seeded():
        model, monitor, metric = _train_seed(
            task.task, data, task.seed, task.epochs, task.lr, task.weight_decay, device
        )
    record = _prune_seed(model, monitor, metric, freq, task.ratios, task.seed, values)
    return values, record


def run_gnn_experiment(
    dataset: str = "cora",
    task: str = "node",
    *,
    seeds: int = 3,
    epochs: int | None = None,
    lr: float = 0.01,
    weight_decay: float | None = None,
    ratios: list[float] | tuple[float, ...] = DEFAULT_RATIOS,
    data_dir: str | None = None,
    device: str | torch.device = "cpu",
    data: Any = None,
    log: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> GnnThermoResult:
    """Train a GCN ``seeds`` times and build the input-feature pruning curves.

    Args:
        dataset: ``"cora"`` or ``"citeseer"`` (original Planetoid files).
        task: ``"node"`` (classification, hidden 16, dropout 0.5) or ``"link"`` (prediction,
            hidden 128, embedding 64).
        seeds: number of seeds (0..seeds-1).
        epochs: full-batch Adam steps (default 200 node, 300 link).
        lr: Adam learning rate.
        weight_decay: Adam weight decay (default 5e-4 node, 0 link).
        ratios: pruning ratios in percent of the input features.
        data_dir: folder searched first for the Planetoid files.
        device: torch device.
        data: optional ``torch_geometric.data.Data`` instead of loading ``dataset`` (tests),
            or a :class:`~leafscope.experiments.tasks.Source` of it.
        log: optional callable receiving progress lines (one per seed, after all seeds ran).
        executor: a :class:`leafscope.execution.Executor` running one task per seed
            (default: in this process); the result does not depend on it.

    Returns:
        A :class:`GnnThermoResult` (metric in percent).
    """
    seed_list, epochs, wd = _check_gnn_args(task, seeds, ratios, epochs, weight_decay)
    device = torch.device(device)
    if data is None:
        data = Source(_planetoid, (dataset, None if data_dir is None else str(data_dir)))
    config = {
        "dataset": dataset, "task": task, "seeds": seeds, "epochs": epochs, "optimizer": "adam",
        "lr": lr, "weight_decay": wd, "layer": LAYER,
        "num_features": int(resolve(data).x.shape[1]),
        "temperature_window": "all steps", "device": str(device),
    }  # fmt: skip
    ratios = tuple(ratios)
    tasks = [GnnSeedTask(task, data, s, epochs, lr, wd, ratios, str(device)) for s in seed_list]
    per_ratio: dict[tuple[str, float], list[float]] = {}
    per_seed = []
    for values, record in map_units(executor, gnn_seed, tasks, "seeds"):
        for key, value in values.items():
            per_ratio.setdefault(key, []).append(value)
        per_seed.append(record)
        if log is not None:
            log(
                f"seed {record['seed']}: {record['metric_before_pruning']:.2f}% before pruning; "
                f"spearman(T, frequency) = {record['spearman_temperature_vs_frequency']:.3f}"
            )
    curves = [CurvePoint(c, r, *mean_std(v), v) for (c, r), v in per_ratio.items()]
    metric_name = "accuracy" if task == "node" else "auroc"
    return GnnThermoResult(config, metric_name, curves, per_seed, dict(PUBLISHED_CURVE))
