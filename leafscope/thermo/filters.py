"""One seed of the filter-temperature experiment on any CNN (theory §4).

Per seed: build a fresh model (``make_model`` after ``torch.manual_seed(seed)``), train it with
:func:`leafscope.training.fit` and a :class:`~leafscope.thermo.TemperatureMonitor` on the
filters of one convolution, then mask filters (no retraining) and score the test data: without
the ``k`` hottest, the ``k`` coldest and ``k`` random filters; each filter removed alone gives
its accuracy drop, compared with its temperature by rank correlation. Accuracies are fractions
in [0, 1], losses cross-entropies in nats.

The drivers are :func:`leafscope.experiments.thermo.filters.run_filter_experiment` (percent,
any executor) and the ``thermo-filters`` task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.thermo.monitor import TemperatureMonitor
from leafscope.thermo.pruning import magnitude_scores, random_scores, select_groups
from leafscope.thermo.seeding import holds_global_rng
from leafscope.thermo.tables import masked_scorer, spearman

__all__ = ["check_k", "filter_conditions", "filter_seed"]


def check_k(k: int | None, n: int, layer: str) -> int:
    """Filters removed per condition: ``k``, or a third of the ``n`` filters (at least 1).

    Raises:
        InputError: ``k`` is not an integer in ``1..n-1``.
    """
    k = max(1, n // 3) if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise InputError(f"k must be an integer in 1..{n - 1} for {layer!r} with {n} filters")
    return k


def filter_conditions(k: int) -> list[str]:
    """The conditions of the table, in order."""
    return ["original", f"without_{k}_hottest", f"without_{k}_coldest", f"without_{k}_random"]


@holds_global_rng
def filter_seed(
    make_model: Callable[[], nn.Module],
    seed: int,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    layer: str,
    k: int,
    window: int | None = 1,
    settings: dict[str, Any],
    device: str | torch.device = "cpu",
) -> tuple[dict, dict]:
    """Train, score and record one seed.

    Args:
        make_model: returns a fresh classifier; called right after ``torch.manual_seed(seed)``.
        seed: the seed of the initialisation, the batch order and the random control.
        train, val, test: ``(inputs, labels)``; inputs (N, C, H, W).
        layer: the convolution (``named_modules`` name) whose filters are the groups.
        k: filters removed per condition (see :func:`check_k`).
        window: epochs averaged for the temperature (None = all, 1 = last epoch).
        settings: :func:`leafscope.training.fit` settings (``epochs`` required).
        device: torch device.

    Returns:
        ``(values, record)``: ``{condition: (accuracy, loss)}`` of :func:`filter_conditions`,
        and the seed's record (one temperature per filter, L1 norms, single-filter accuracy
        drops, rank correlations, training history).
    """
    from leafscope.training import fit

    device = torch.device(device)
    test = tuple(t.to(device) for t in test)
    torch.manual_seed(seed)
    model = make_model().to(device)
    monitor = TemperatureMonitor({layer: "filters"})
    result = fit(model, train, val, seed=seed, device=device, callbacks=[monitor],
                 progress=False, **settings)  # fmt: skip
    model.eval()
    temps = monitor.temperatures(window=window)[layer]
    n = temps.numel()
    score = masked_scorer(model, layer, test, device)
    names = filter_conditions(k)
    values = {
        names[0]: score([]),
        names[1]: score(select_groups(temps, k, "remove", "highest")),
        names[2]: score(select_groups(temps, k, "remove", "lowest")),
        names[3]: score(select_groups(random_scores(n, 1000 + seed), k)),
    }
    drop = torch.tensor([values["original"][0] - score([i])[0] for i in range(n)])
    l1 = magnitude_scores(model, layer)
    record = {
        "seed": seed,
        "temperatures": temps.tolist(),
        "l1": l1.tolist(),
        "single_filter_accuracy_drop": drop.tolist(),
        "spearman_temperature_vs_drop": spearman(temps, drop),
        "spearman_l1_vs_drop": spearman(l1, drop),
        "spearman_temperature_vs_l1": spearman(temps, l1),
        "train_history": result.history,
    }
    return values, record
