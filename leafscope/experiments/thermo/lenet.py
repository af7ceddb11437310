"""LeNet-5 on MNIST: temperature of conv1's 6 filters and the hot/cold pruning table (theory §4).

Per seed (:func:`leafscope.thermo.lenet.lenet_seed`): train without regularisation (no weight
decay, no dropout) with :func:`leafscope.training.fit`, record the temperature of ``conv1``'s
filters with two monitors (per-step velocity and per-epoch velocity), then mask filters (no
retraining) and evaluate on the 10k MNIST test images. The same trained model is scored under
several temperature definitions (``variants``), so the direction of the effect can be compared
across definitions without retraining. This driver runs one task per seed on any executor and
reports accuracies in percent; the ``thermo-lenet`` command runs the same seeds as a task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from leafscope.errors import InputError
from leafscope.execution import Executor
from leafscope.experiments.tasks import Source, map_units, resolve, seeded
from leafscope.experiments.thermo.common import PruningRow, in_percent
from leafscope.thermo import lenet as core
from leafscope.thermo.lenet import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    LAYER,
    MAIN_CONDITIONS,
    PUBLISHED,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "LAYER",
    "MAIN_CONDITIONS",
    "PUBLISHED",
    "LenetSeedTask",
    "LenetThermoResult",
    "lenet_seed",
    "run_lenet_experiment",
]


@dataclass
class LenetThermoResult:
    """Outcome of :func:`run_lenet_experiment`.

    Attributes:
        config: the settings (optimizer, lr, momentum, epochs, batch size, window, velocity...).
        rows: main table (``MAIN_CONDITIONS``) followed by the controls (random, L1, Taylor).
        variants: temperature definition → the four hot/cold rows under that definition.
        per_seed: per seed: temperatures (each definition), L1 and Taylor scores, accuracy drop
            of each single filter (percentage points), rank correlations, training history,
            monitor history.
        published: the published table (theory §4) for comparison.
    """

    config: dict[str, Any]
    rows: list[PruningRow]
    variants: dict[str, list[PruningRow]] = field(default_factory=dict)
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary (``rows`` as in the CLI contract)."""
        return asdict(self)

    def row(self, condition: str) -> PruningRow:
        """The main-table row named ``condition``."""
        for r in self.rows:
            if r.condition == condition:
                return r
        raise InputError(f"no row {condition!r}: use one of {[r.condition for r in self.rows]}")


def _load_mnist(data_dir: str | None, val_fraction: float, seed: int, limit: int | None = None):
    from leafscope.data.images import load_images

    train = load_images("mnist", "train", data_dir=data_dir, limit=limit)
    test = load_images("mnist", "test", data_dir=data_dir, limit=limit)
    n = train.images.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * n))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return (
        (train.images[train_idx], train.labels[train_idx]),
        (train.images[val_idx], train.labels[val_idx]),
        (test.images, test.labels),
    )


def _lenet(num_classes: int = 10):
    from leafscope.models import build_model

    return build_model("lenet", activation="relu", num_classes=num_classes)


@dataclass(frozen=True)
class LenetSeedTask:
    """One seed of :func:`run_lenet_experiment` (data as tensors or
    :class:`~leafscope.experiments.tasks.Source` s; settings as sorted pairs)."""

    seed: int
    train: Any
    val: Any
    test: Any
    settings: tuple
    velocity: str
    window: int | None
    taylor_batches: int
    device: str


def lenet_seed(task: LenetSeedTask) -> tuple[dict, dict, dict]:
    """Train, score and tabulate one seed: ``(values, variants, per-seed record)``, accuracies
    in percent (a top-level task for any executor)."""
    from leafscope.execution import worker_device

    settings = dict(task.settings)
    with seeded():
        values, variants, record = core.lenet_seed(
            _lenet, task.seed, resolve(task.train), resolve(task.val),
            resolve(task.test), settings=settings, velocity=task.velocity, window=task.window,
            taylor_batches=task.taylor_batches, device=worker_device(task.device),
        )  # fmt: skip
    record["single_filter_accuracy_drop"] = [
        100.0 * d for d in record["single_filter_accuracy_drop"]
    ]
    return in_percent(values), {k: in_percent(v) for k, v in variants.items()}, record


def _log_seed(log: Callable[[str], None], values: dict, record: dict) -> None:
    main_t = record["temperatures"][record["main_temperature"]]
    log(
        f"seed {record['seed']}: test acc {values['original'][0]:.2f}%, "
        f"T({record['main_temperature']}) = {[f'{v:.2e}' for v in main_t]}, "
        f"-2 hottest {values['without_2_hottest'][0]:.2f}%, "
        f"-2 coldest {values['without_2_coldest'][0]:.2f}%"
    )


def run_lenet_experiment(
    seeds: int = 5,
    *,
    optimizer: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.0,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    window: int | None = 1,
    velocity: str = "step",
    val_fraction: float = 0.1,
    taylor_batches: int = 4,
    data_dir: str | None = None,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    data: tuple | Source | None = None,
    log: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> LenetThermoResult:
    """Train LeNet-5 on MNIST ``seeds`` times and build the hot/cold pruning table.

    Args:
        seeds: number of seeds (0..seeds-1: weights init, batch order, random control).
        optimizer: ``"sgd"`` or ``"adam"`` (no weight decay: no regularisation).
        lr, momentum: optimizer settings (momentum only for SGD). The defaults (plain SGD,
            lr 0.01) are the experiment's own, independent of ``leafscope train``'s.
        epochs, batch_size: training length and batch size.
        window: epochs averaged for the main temperature (``None`` = all, 1 = last epoch).
        velocity: ``"step"`` or ``"epoch"`` velocity for the main temperature.
        val_fraction: fraction of the 60k training images held out for validation.
        taylor_batches: training batches of 256 used for the Taylor scores.
        data_dir: folder searched first for the MNIST files.
        limit: use only the first ``limit`` MNIST training and test images (quick runs).
        device: torch device.
        data: optional ``(train, val, test)`` pairs of tensors instead of MNIST (for tests),
            or a :class:`~leafscope.experiments.tasks.Source` of them.
        log: optional callable receiving progress lines (one per seed, after all seeds ran).
        executor: a :class:`leafscope.execution.Executor` running one task per seed
            (default: in this process); the result does not depend on it.

    Returns:
        A :class:`LenetThermoResult` (accuracies in percent, losses in nats).
    """
    seed_list = core.check_lenet_args(seeds, velocity, window)
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    device = torch.device(device)
    if data is None:
        data = Source(_load_mnist, (data_dir, val_fraction, 0, limit))
    train, val, test = (data.part(i) for i in range(3)) if isinstance(data, Source) else data
    n_train, n_test = len(resolve(train)[0]), len(resolve(test)[0])
    settings = {
        "epochs": epochs, "optimizer": optimizer, "lr": lr, "weight_decay": 0.0,
        "momentum": momentum if optimizer == "sgd" else 0.0, "batch_size": batch_size,
    }  # fmt: skip
    config = {
        "model": "lenet",
        "dataset": "mnist" if isinstance(data, Source) and data.fn is _load_mnist else "custom",
        "optimizer": optimizer, "lr": lr, "momentum": momentum, "weight_decay": 0.0,
        "epochs": epochs, "batch_size": batch_size, "window": window, "velocity": velocity,
        "seeds": seeds, "train_size": n_train, "test_size": n_test,
        "layer": LAYER, "device": str(device),
    }  # fmt: skip
    tasks = [
        LenetSeedTask(seed, train, val, test, tuple(sorted(settings.items())), velocity, window,
                      taylor_batches, str(device))
        for seed in seed_list
    ]  # fmt: skip
    per_seed_values, variant_values, per_seed = [], [], []
    for values, variants, record in map_units(executor, lenet_seed, tasks, "seeds"):
        per_seed_values.append(values)
        variant_values.append(variants)
        per_seed.append(record)
        if log is not None:
            _log_seed(log, values, record)
    rows, variants_rows = core.aggregate(per_seed_values, variant_values)
    return LenetThermoResult(config, rows, variants_rows, per_seed, list(PUBLISHED))
