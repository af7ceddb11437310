"""LeNet-5 on MNIST: temperature of conv1's 6 filters and the hot/cold pruning table (theory §4).

Per seed: train without regularisation (no weight decay, no dropout) with
:func:`leafscope.training.fit`, record the temperature of ``conv1``'s filters with two monitors
(per-step velocity and per-epoch velocity), then mask filters (no retraining) and evaluate on
the 10k MNIST test images. The same trained model is scored under several temperature
definitions (``variants``), so the direction of the effect can be compared across definitions
without retraining.
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
from leafscope.experiments.thermo.common import (
    PruningRow,
    aggregate_rows,
    masked_scorer,
    spearman,
    validate_seeds,
)
from leafscope.thermo.monitor import TemperatureMonitor
from leafscope.thermo.pruning import (
    magnitude_scores,
    random_scores,
    select_groups,
    taylor_scores,
)

LAYER = "conv1"
MAIN_CONDITIONS = [
    "original",
    "without_2_hottest",
    "only_3_hottest",
    "without_2_coldest",
    "only_3_coldest",
]
# (suffix, action, k, end)
_OPERATIONS = [
    ("without_2_{hi}", "remove", 2, "highest"),
    ("only_3_{hi}", "keep", 3, "highest"),
    ("without_2_{lo}", "remove", 2, "lowest"),
    ("only_3_{lo}", "keep", 3, "lowest"),
]
DEFAULT_EPOCHS = 8
DEFAULT_BATCH_SIZE = 32


@dataclass
class LenetThermoResult:
    """Outcome of :func:`run_lenet_experiment`.

    Attributes:
        config: the settings (optimizer, lr, momentum, epochs, batch size, window, velocity...).
        rows: main table (``MAIN_CONDITIONS``) followed by the controls (random, L1, Taylor).
        variants: temperature definition → the four hot/cold rows under that definition.
        per_seed: per seed: temperatures (each definition), L1 and Taylor scores, accuracy drop
            of each single filter, rank correlations, training history, monitor history.
        published: the published table (theory §4) for comparison.
    """

    config: dict[str, Any]
    rows: list[PruningRow]
    variants: dict[str, list[PruningRow]] = field(default_factory=dict)
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary (``rows`` as in the CLI contract)."""
        out = asdict(self)
        return out

    def row(self, condition: str) -> PruningRow:
        """The main-table row named ``condition``."""
        for r in self.rows:
            if r.condition == condition:
                return r
        raise InputError(f"no row {condition!r}: use one of {[r.condition for r in self.rows]}")


PUBLISHED = [
    {"condition": "original", "accuracy_mean": 98.80, "accuracy_std": 0.13,
     "loss_mean": 0.084, "loss_std": 0.022},
    {"condition": "without_2_hottest", "accuracy_mean": 98.52, "accuracy_std": 0.32,
     "loss_mean": 0.94, "loss_std": 0.36},
    {"condition": "only_3_hottest", "accuracy_mean": 19.60, "accuracy_std": 5.66,
     "loss_mean": 5.23, "loss_std": 1.61},
    {"condition": "without_2_coldest", "accuracy_mean": 65.40, "accuracy_std": 13.77,
     "loss_mean": 2.83, "loss_std": 2.22},
    {"condition": "only_3_coldest", "accuracy_mean": 88.88, "accuracy_std": 6.86,
     "loss_mean": 0.62, "loss_std": 0.48},
]  # fmt: skip


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


def _variant_temperatures(
    step: TemperatureMonitor, epoch: TemperatureMonitor
) -> dict[str, torch.Tensor]:
    hist = step.history()
    first = torch.tensor(hist.epoch_temperatures[LAYER][0], dtype=torch.float64)
    return {
        "step_velocity/last_epoch": step.temperatures(window=1)[LAYER],
        "step_velocity/all_epochs": step.temperatures(window=None)[LAYER],
        "step_velocity/first_epoch": first,
        "epoch_velocity/all_epochs": epoch.temperatures(window=None)[LAYER],
        "epoch_velocity/last_epoch": epoch.temperatures(window=1)[LAYER],
    }


def _check_lenet_args(
    seeds: int, velocity: str, window: int | None, val_fraction: float
) -> list[int]:
    seed_list = validate_seeds(seeds)
    if velocity not in ("step", "epoch"):
        raise InputError(f"unknown velocity {velocity!r}: use 'step' or 'epoch'")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise InputError(f"window must be a positive number of epochs or None, got {window!r}")
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    return seed_list


def _train_seed(seed: int, train: tuple, val: tuple, settings: dict, device: torch.device):
    """Train one LeNet-5 with two temperature monitors; ``(model, step_mon, epoch_mon, result)``."""
    from leafscope.models import build_model
    from leafscope.training import fit

    torch.manual_seed(seed)
    model = build_model("lenet", activation="relu", num_classes=10).to(device)
    step_mon = TemperatureMonitor({LAYER: "filters"}, snapshot="step", downsample=50)
    epoch_mon = TemperatureMonitor({LAYER: "filters"}, velocity="epoch")
    result = fit(model, train, val, seed=seed, device=device, callbacks=[step_mon, epoch_mon],
                 progress=False, **settings)  # fmt: skip
    model.eval()
    return model, step_mon, epoch_mon, result


def _seed_temperatures(step_mon, epoch_mon, velocity: str, window: int | None):
    """Every temperature definition and the name of the main one."""
    temps = _variant_temperatures(step_mon, epoch_mon)
    main_key = f"{velocity}_velocity/" + ("all_epochs" if window is None else "last_epoch")
    if window not in (None, 1):
        main_key = f"{velocity}_velocity/last_{window}_epochs"
        mon = step_mon if velocity == "step" else epoch_mon
        temps[main_key] = mon.temperatures(window=window)[LAYER]
    return temps, main_key


def _taylor(model: nn.Module, train: tuple, seed: int, n_batches: int, device) -> torch.Tensor:
    """Taylor scores of conv1 on ``n_batches`` seeded training batches of 256."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(train[0].shape[0], generator=gen)[: 256 * n_batches]
    batches = [
        (train[0][idx[i : i + 256]].to(device), train[1][idx[i : i + 256]].to(device))
        for i in range(0, len(idx), 256)
    ]
    return taylor_scores(
        model, LAYER, batches, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])
    )


def _seed_tables(model, temps, main_key, l1, taylor, seed, test, device):
    """Masked test (accuracy %, loss) of every condition and variant; single-filter drops."""
    score = masked_scorer(model, LAYER, test, device)

    scores = {
        ("hottest", "coldest"): temps[main_key],
        ("random", "random_other"): random_scores(6, 1000 + seed),
        ("largest_l1", "smallest_l1"): l1,
        ("largest_taylor", "smallest_taylor"): taylor,
    }
    values = {"original": score([])}
    for (hi, lo), s in scores.items():
        for pattern, action, k, end in _OPERATIONS:
            values[pattern.format(hi=hi, lo=lo)] = score(select_groups(s, k, action, end))
    variants = {
        vname: {
            pattern.format(hi="hottest", lo="coldest"): score(select_groups(t, k, action, end))
            for pattern, action, k, end in _OPERATIONS
        }
        for vname, t in temps.items()
    }
    single_drop = torch.tensor([values["original"][0] - score([i])[0] for i in range(6)])
    return values, variants, single_drop


def _aggregate(per_seed_values: list, variant_values: list) -> tuple[list, dict]:
    """Main + control rows and the per-variant hot/cold rows (mean ± std over seeds)."""
    control_order = [
        pattern.format(hi=hi, lo=lo)
        for hi, lo in [("random", "random_other"), ("largest_l1", "smallest_l1"),
                       ("largest_taylor", "smallest_taylor")]
        for pattern, _, _, _ in _OPERATIONS
    ]  # fmt: skip
    # the "random_other" rows duplicate the random ones (same random order): keep two
    control_order = [c for c in control_order if "random_other" not in c]
    rows = aggregate_rows(per_seed_values, MAIN_CONDITIONS + control_order)
    hot_cold = MAIN_CONDITIONS[1:]
    variants_rows = {
        name: aggregate_rows([v[name] for v in variant_values], hot_cold)
        for name in variant_values[0]
    }
    return rows, variants_rows


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
    """Train, score and tabulate one seed: ``(values, variants, per-seed record)`` (a top-level
    task for any executor)."""
    from leafscope.execution import worker_device

    device = worker_device(task.device)
    train, val = resolve(task.train), resolve(task.val)
    test = tuple(t.to(device) for t in resolve(task.test))
    seed, window = task.seed, task.window
    with seeded():
        model, step_mon, epoch_mon, result = _train_seed(
            seed, train, val, dict(task.settings), device
        )
        temps, main_key = _seed_temperatures(step_mon, epoch_mon, task.velocity, window)
        l1 = magnitude_scores(model, LAYER)
        taylor = _taylor(model, train, seed, task.taylor_batches, device)
        values, variants, single_drop = _seed_tables(
            model, temps, main_key, l1, taylor, seed, test, device
        )
    record = {
        "seed": seed,
        "temperatures": {k: v.tolist() for k, v in temps.items()},
        "main_temperature": main_key,
        "l1": l1.tolist(), "taylor": taylor.tolist(),
        "single_filter_accuracy_drop": single_drop.tolist(),
        "spearman_temperature_vs_drop": {k: spearman(v, single_drop) for k, v in temps.items()},
        "spearman_temperature_vs_l1": spearman(temps[main_key], l1),
        "spearman_l1_vs_drop": spearman(l1, single_drop),
        "spearman_taylor_vs_drop": spearman(taylor, single_drop),
        "train_history": result.history,
        "monitor": step_mon.history().to_json(),
    }  # fmt: skip
    return values, variants, record


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
    seed_list = _check_lenet_args(seeds, velocity, window, val_fraction)
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
    rows, variants_rows = _aggregate(per_seed_values, variant_values)
    return LenetThermoResult(config, rows, variants_rows, per_seed, list(PUBLISHED))
