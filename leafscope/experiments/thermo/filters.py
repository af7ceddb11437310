"""Temperature of the filters of one convolution of any CNN, and hot/cold pruning (theory §4).

The LeNet-5 experiment (:mod:`leafscope.experiments.thermo.lenet`) fixes the model, the data
and the layer; this one takes them: a factory of fresh models (a zoo model built for the data,
or a user module), image data at their own shape, and the name of a ``Conv2d`` layer. Per seed
(:func:`leafscope.thermo.filters.filter_seed`): train with :func:`leafscope.training.fit` and a
:class:`~leafscope.thermo.TemperatureMonitor` on the layer's filters, then mask filters (no
retraining) and evaluate on the test set: without the ``k`` hottest, without the ``k`` coldest,
without ``k`` random filters; each filter alone removed gives its accuracy drop, compared with
its temperature by rank correlation. This driver runs one task per seed on any executor and
reports accuracies in percent; the ``thermo-filters`` command runs the same seeds as a task.

A model that trains to chance (test accuracy within :data:`CHANCE_MARGIN` points of
``100 / classes``) has no learned filters to measure: the experiment warns and records
``trained_to_chance``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from leafscope.execution import Executor
from leafscope.experiments.tasks import Source, map_units, resolve, seeded
from leafscope.experiments.thermo.common import (
    PruningRow,
    aggregate_rows,
    in_percent,
    validate_seeds,
)
from leafscope.thermo import filters as core
from leafscope.thermo.groups import resolve_layer

__all__ = [
    "CHANCE_MARGIN",
    "FilterSeedTask",
    "FilterThermoResult",
    "filter_seed",
    "run_filter_experiment",
]

#: Percentage points above chance (100 / classes) at or below which a seed counts as trained to
#: chance.
CHANCE_MARGIN = 2.0


@dataclass
class FilterThermoResult:
    """Outcome of :func:`run_filter_experiment`.

    Attributes:
        config: the settings (layer, number of filters, k, optimizer, epochs, ...).
        rows: test accuracy (%) and loss (nats), mean ± std over seeds, of ``original``,
            ``without_k_hottest``, ``without_k_coldest`` and ``without_k_random``.
        per_seed: per seed: one temperature per filter, L1 norms, single-filter accuracy drops
            (percentage points), rank correlations, training history, whether that seed trained
            to chance.
        trained_to_chance: some seed's test accuracy is within :data:`CHANCE_MARGIN` points of
            chance (``config["chance_accuracy"]``): its temperatures describe an untrained
            network (a warning was emitted).
    """

    config: dict[str, Any]
    rows: list[PruningRow]
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    trained_to_chance: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)

    @property
    def temperatures(self) -> list[list[float]]:
        """Per seed, one temperature per filter of the layer."""
        return [s["temperatures"] for s in self.per_seed]


@dataclass(frozen=True)
class FilterSeedTask:
    """One seed of :func:`run_filter_experiment` (data as tensors or
    :class:`~leafscope.experiments.tasks.Source` s; ``make_model`` picklable)."""

    seed: int
    make_model: Any
    layer: str
    k: int
    train: Any
    val: Any
    test: Any
    window: int | None
    settings: tuple
    device: str


def filter_seed(task: FilterSeedTask) -> tuple[dict, dict]:
    """Train, score and record one seed: ``(values, record)``, accuracies in percent (a
    top-level task)."""
    from leafscope.execution import worker_device

    with seeded():
        values, record = core.filter_seed(
            task.make_model, task.seed, resolve(task.train), resolve(task.val),
            resolve(task.test), layer=task.layer, k=task.k, window=task.window,
            settings=dict(task.settings), device=worker_device(task.device),
        )  # fmt: skip
    record["single_filter_accuracy_drop"] = [
        100.0 * d for d in record["single_filter_accuracy_drop"]
    ]
    return in_percent(values), record


def run_filter_experiment(
    make_model: Callable[[], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor] | Source,
    val: tuple[torch.Tensor, torch.Tensor] | Source | None,
    test: tuple[torch.Tensor, torch.Tensor] | Source,
    *,
    layer: str,
    seeds: int = 3,
    k: int | None = None,
    window: int | None = 1,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
    executor: Executor | None = None,
    **fit_settings: Any,
) -> FilterThermoResult:
    """Train ``seeds`` fresh models, measure the temperature of ``layer``'s filters, prune.

    Args:
        make_model: returns a fresh classifier (called after ``torch.manual_seed(seed)``;
            picklable, e.g. a ``functools.partial``, for a Dask executor).
        train, val, test: ``(inputs, labels)``; inputs (N, C, H, W) at the data's own shape
            (or :class:`~leafscope.experiments.tasks.Source` s of them, loaded by the workers).
        layer: a convolution of the model (``named_modules`` name, e.g. ``"conv1"``,
            ``"block1.0"``); its filters are the groups.
        seeds: number of seeds (0..seeds-1: init, batch order, random control).
        k: filters removed per condition (default: a third of them, at least 1).
        window: epochs averaged for the temperature (None = all, 1 = last epoch).
        device: torch device.
        log: optional callable receiving one progress line per seed (after all seeds ran).
        executor: a :class:`leafscope.execution.Executor` running one task per seed
            (default: in this process); the result does not depend on it.
        **fit_settings: passed to :func:`leafscope.training.fit` (``epochs`` required;
            ``optimizer``, ``lr``, ``momentum``, ``batch_size``, ...).

    Returns:
        A :class:`FilterThermoResult` (accuracies in percent, losses in nats).

    Raises:
        InputError: ``layer`` is not a convolution of the model, or ``k`` is not in
            ``1..filters-1``.
    """
    seed_list = validate_seeds(seeds)
    device = torch.device(device)
    n = resolve_layer(make_model(), layer, "filters").n_groups
    k = core.check_k(k, n, layer)
    settings = tuple(sorted(fit_settings.items()))
    tasks = [
        FilterSeedTask(seed, make_model, layer, k, train, val, test, window, settings, str(device))
        for seed in seed_list
    ]
    per_seed_values, per_seed = [], []
    for values, record in map_units(executor, filter_seed, tasks, "seeds"):
        per_seed_values.append(values)
        per_seed.append(record)
        if log is not None:
            log(
                f"seed {record['seed']}: test acc {values['original'][0]:.2f}%, T({layer}) = "
                f"{[f'{t:.2e}' for t in record['temperatures']]}"
            )
    settings = {key: v for key, v in fit_settings.items() if isinstance(v, (int, float, str))}
    classes = _num_classes(resolve(train)[1], resolve(test)[1])
    chance = 100.0 / classes
    for values, record in zip(per_seed_values, per_seed, strict=True):
        record["trained_to_chance"] = bool(values["original"][0] <= chance + CHANCE_MARGIN)
    low = [(r["seed"], v["original"][0]) for v, r in zip(per_seed_values, per_seed, strict=True)
           if r["trained_to_chance"]]  # fmt: skip
    if low:
        _warn_chance(low, chance, classes, fit_settings)
    config = {
        "layer": layer, "filters": n, "k": k, "seeds": seeds, "window": window,
        "train_size": int(resolve(train)[0].shape[0]),
        "test_size": int(resolve(test)[0].shape[0]),
        "input_shape": list(resolve(train)[0].shape[1:]), "device": str(device),
        "num_classes": classes, "chance_accuracy": chance, **settings,
    }  # fmt: skip
    conditions = core.filter_conditions(k)
    rows = aggregate_rows(per_seed_values, conditions)
    return FilterThermoResult(config, rows, per_seed, trained_to_chance=bool(low))


def _num_classes(*labels: torch.Tensor) -> int:
    """Number of distinct labels in the given label tensors (at least 1)."""
    return max(1, int(torch.unique(torch.cat([y.reshape(-1).cpu() for y in labels])).numel()))


def _warn_chance(
    low: list[tuple[int, float]], chance: float, classes: int, fit_settings: dict[str, Any]
) -> None:
    """Warn that the seeds ``low`` ((seed, test accuracy %)) trained to chance."""
    seeds = ", ".join(f"seed {s}: {acc:.1f}%" for s, acc in low)
    epochs, lr = fit_settings.get("epochs"), fit_settings.get("lr")
    warnings.warn(
        f"the model trained to chance: test accuracy {seeds}, chance is {chance:.1f}% "
        f"({classes} classes, warned within {CHANCE_MARGIN:g} points); the temperatures and "
        f"the pruning table describe an untrained network. Train longer (more epochs, now "
        f"{epochs}) or with a larger learning rate (lr, now {lr})",
        UserWarning,
        stacklevel=3,
    )
