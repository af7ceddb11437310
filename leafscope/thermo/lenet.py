"""One seed of the LeNet-5 filter-temperature table (theory §4): train, measure, mask, score.

Per seed: build a fresh model (``make_model`` after ``torch.manual_seed(seed)``), train it
without regularisation with :func:`leafscope.training.fit` and two temperature monitors on the
filters of ``layer`` (per-step velocity and per-epoch velocity), then mask filters (no
retraining) and score the test data: the hottest / coldest under the main temperature, random,
largest / smallest L1 and Taylor filters, and the hot/cold conditions under every temperature
definition (``variants``: the same trained model, several definitions). Accuracies are fractions
in [0, 1], losses cross-entropies in nats.

The drivers are :func:`leafscope.experiments.thermo.run_lenet_experiment` (percent, any
executor) and the ``thermo-lenet`` task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.thermo.monitor import TemperatureMonitor
from leafscope.thermo.pruning import magnitude_scores, random_scores, select_groups, taylor_scores
from leafscope.thermo.seeding import holds_global_rng
from leafscope.thermo.tables import PruningRow, aggregate_rows, masked_scorer, spearman

__all__ = [
    "CONDITIONS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "LAYER",
    "MAIN_CONDITIONS",
    "PUBLISHED",
    "aggregate",
    "check_lenet_args",
    "lenet_seed",
]

LAYER = "conv1"
MAIN_CONDITIONS = [
    "original",
    "without_2_hottest",
    "only_3_hottest",
    "without_2_coldest",
    "only_3_coldest",
]
# (suffix, action, k, end)
OPERATIONS = [
    ("without_2_{hi}", "remove", 2, "highest"),
    ("only_3_{hi}", "keep", 3, "highest"),
    ("without_2_{lo}", "remove", 2, "lowest"),
    ("only_3_{lo}", "keep", 3, "lowest"),
]
_CONTROLS = [("random", "random_other"), ("largest_l1", "smallest_l1"),
             ("largest_taylor", "smallest_taylor")]  # fmt: skip
# the "random_other" rows duplicate the random ones (same random order): not in the table
CONDITIONS = MAIN_CONDITIONS + [
    pattern.format(hi=hi, lo=lo)
    for hi, lo in _CONTROLS
    for pattern, _, _, _ in OPERATIONS
    if "random_other" not in pattern.format(hi=hi, lo=lo)
]
#: The hot/cold conditions scored under every temperature definition.
HOT_COLD = MAIN_CONDITIONS[1:]
DEFAULT_EPOCHS = 8
DEFAULT_BATCH_SIZE = 32
#: The smallest number of filters the table can be built for (it keeps 3 and removes 2).
MIN_FILTERS = 4

#: The published table (theory §4): test accuracy in percent, loss in nats.
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


def check_lenet_args(seeds: int, velocity: str, window: int | None) -> list[int]:
    """The seed list ``0..seeds-1``; the velocity and window checked."""
    from leafscope.thermo.tables import validate_seeds

    seed_list = validate_seeds(seeds)
    if velocity not in ("step", "epoch"):
        raise InputError(f"unknown velocity {velocity!r}: use 'step' or 'epoch'")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise InputError(f"window must be a positive number of epochs or None, got {window!r}")
    return seed_list


def _variant_temperatures(
    step: TemperatureMonitor, epoch: TemperatureMonitor, layer: str
) -> dict[str, torch.Tensor]:
    hist = step.history()
    first = torch.tensor(hist.epoch_temperatures[layer][0], dtype=torch.float64)
    return {
        "step_velocity/last_epoch": step.temperatures(window=1)[layer],
        "step_velocity/all_epochs": step.temperatures(window=None)[layer],
        "step_velocity/first_epoch": first,
        "epoch_velocity/all_epochs": epoch.temperatures(window=None)[layer],
        "epoch_velocity/last_epoch": epoch.temperatures(window=1)[layer],
    }


def _seed_temperatures(step_mon, epoch_mon, layer: str, velocity: str, window: int | None):
    """Every temperature definition and the name of the main one."""
    temps = _variant_temperatures(step_mon, epoch_mon, layer)
    main_key = f"{velocity}_velocity/" + ("all_epochs" if window is None else "last_epoch")
    if window not in (None, 1):
        main_key = f"{velocity}_velocity/last_{window}_epochs"
        mon = step_mon if velocity == "step" else epoch_mon
        temps[main_key] = mon.temperatures(window=window)[layer]
    return temps, main_key


def _taylor(model: nn.Module, layer: str, train: tuple, seed: int, n_batches: int, device):
    """Taylor scores of ``layer`` on ``n_batches`` seeded training batches of 256."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(train[0].shape[0], generator=gen)[: 256 * n_batches]
    batches = [
        (train[0][idx[i : i + 256]].to(device), train[1][idx[i : i + 256]].to(device))
        for i in range(0, len(idx), 256)
    ]
    return taylor_scores(
        model, layer, batches, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])
    )


def _seed_tables(model, layer, temps, main_key, l1, taylor, seed, test, device):
    """Masked test (accuracy, loss) of every condition and variant; single-filter drops."""
    score = masked_scorer(model, layer, test, device)
    n = int(l1.numel())
    scores = {
        ("hottest", "coldest"): temps[main_key],
        ("random", "random_other"): random_scores(n, 1000 + seed),
        ("largest_l1", "smallest_l1"): l1,
        ("largest_taylor", "smallest_taylor"): taylor,
    }
    values = {"original": score([])}
    for (hi, lo), s in scores.items():
        for pattern, action, k, end in OPERATIONS:
            values[pattern.format(hi=hi, lo=lo)] = score(select_groups(s, k, action, end))
    variants = {
        vname: {
            pattern.format(hi="hottest", lo="coldest"): score(select_groups(t, k, action, end))
            for pattern, action, k, end in OPERATIONS
        }
        for vname, t in temps.items()
    }
    single_drop = torch.tensor([values["original"][0] - score([i])[0] for i in range(n)])
    return values, variants, single_drop


@holds_global_rng
def lenet_seed(
    make_model: Callable[[], nn.Module],
    seed: int,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    settings: dict[str, Any],
    velocity: str = "step",
    window: int | None = 1,
    taylor_batches: int = 4,
    device: str | torch.device = "cpu",
    layer: str = LAYER,
) -> tuple[dict, dict, dict]:
    """Train, score and tabulate one seed.

    Args:
        make_model: returns a fresh classifier; called right after ``torch.manual_seed(seed)``.
        seed: the seed of the initialisation, the batch order and the random control.
        train, val, test: ``(inputs, labels)``.
        settings: :func:`leafscope.training.fit` settings (``epochs``, ``optimizer``, ``lr``...).
        velocity: ``"step"`` or ``"epoch"`` velocity for the main temperature.
        window: epochs averaged for the main temperature (None = all, 1 = last epoch).
        taylor_batches: training batches of 256 for the Taylor scores.
        device: torch device.
        layer: the convolution whose filters are the groups (``named_modules`` name); it needs
            at least :data:`MIN_FILTERS` filters.

    Returns:
        ``(values, variants, record)``: ``{condition: (accuracy, loss)}`` of :data:`CONDITIONS`
        (and the duplicate random rows), ``{definition: {hot/cold condition: (accuracy,
        loss)}}``, and the seed's record (temperatures of every definition, L1 and Taylor
        scores, single-filter accuracy drops, rank correlations, training and monitor
        histories).
    """
    from leafscope.training import fit

    device = torch.device(device)
    test = tuple(t.to(device) for t in test)
    torch.manual_seed(seed)
    model = make_model().to(device)
    step_mon = TemperatureMonitor({layer: "filters"}, snapshot="step", downsample=50)
    epoch_mon = TemperatureMonitor({layer: "filters"}, velocity="epoch")
    result = fit(model, train, val, seed=seed, device=device, callbacks=[step_mon, epoch_mon],
                 progress=False, **settings)  # fmt: skip
    model.eval()
    temps, main_key = _seed_temperatures(step_mon, epoch_mon, layer, velocity, window)
    l1 = magnitude_scores(model, layer)
    if l1.numel() < MIN_FILTERS:
        raise InputError(
            f"layer {layer!r} has {l1.numel()} filters: the table removes 2 and keeps 3, so it "
            f"needs at least {MIN_FILTERS}"
        )
    taylor = _taylor(model, layer, train, seed, taylor_batches, device)
    values, variants, single_drop = _seed_tables(
        model, layer, temps, main_key, l1, taylor, seed, test, device
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


def aggregate(
    per_seed_values: list[dict], variant_values: list[dict]
) -> tuple[list[PruningRow], dict[str, list[PruningRow]]]:
    """The rows of :data:`CONDITIONS` and, per temperature definition, the hot/cold rows
    (mean ± std over seeds)."""
    rows = aggregate_rows(per_seed_values, CONDITIONS)
    variants_rows = {
        name: aggregate_rows([v[name] for v in variant_values], HOT_COLD)
        for name in variant_values[0]
    }
    return rows, variants_rows
