"""GCN on Planetoid: temperature of the input features and the pruning curves (theory §4).

Per seed (:func:`leafscope.thermo.gnn.gnn_seed`): train a 2-layer GCN with
:func:`leafscope.training.fit` (full batch: one Adam step per epoch) with a
:class:`~leafscope.thermo.TemperatureMonitor` on the input features of ``conv1``, averaged over
all training steps; then zero a growing fraction of input features (no retraining) chosen by
temperature (cold, hot), at random, by magnitude and by rarity, and report test accuracy (node
classification, public Planetoid split) or test AUROC (link prediction, seeded
``RandomLinkSplit`` 85/5/10, dot-product decoder). This driver runs one task per seed on any
executor and reports the metric in percent; the ``thermo-gnn`` command runs the same seeds as a
task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from leafscope.errors import InputError
from leafscope.execution import Executor
from leafscope.experiments.tasks import Source, map_units, resolve, seeded
from leafscope.experiments.thermo.common import mean_std
from leafscope.thermo import gnn as core
from leafscope.thermo.gnn import CRITERIA, DEFAULT_RATIOS, LAYER, PUBLISHED_CURVE

__all__ = [
    "CRITERIA",
    "DEFAULT_RATIOS",
    "LAYER",
    "PUBLISHED_CURVE",
    "CurvePoint",
    "GnnSeedTask",
    "GnnThermoResult",
    "gnn_seed",
    "run_gnn_experiment",
]


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
        per_seed: per seed: metric before pruning (percent), the temperature of every input
            feature, rank correlations of temperature with feature frequency and column
            magnitude, overlap of cold and rare sets.
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

    with seeded():
        values, record = core.gnn_seed(
            task.task, resolve(task.data), task.seed, epochs=task.epochs, lr=task.lr,
            weight_decay=task.weight_decay, ratios=task.ratios,
            device=worker_device(task.device),
        )  # fmt: skip
    record["metric_before_pruning"] = 100.0 * record["metric_before_pruning"]
    return {key: 100.0 * value for key, value in values.items()}, record


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
    seed_list, epochs, wd = core.check_gnn_args(task, seeds, ratios, epochs, weight_decay)
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
