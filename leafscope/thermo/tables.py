"""Pruning tables over seeds: per-condition rows (mean ± std), the masked scorer, rank
correlation.

Accuracies are fractions in [0, 1] and losses mean cross-entropies in nats, unless a caller
scales them (the experiment drivers of :mod:`leafscope.experiments.thermo` report percent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from leafscope.errors import InputError

__all__ = [
    "PruningRow",
    "aggregate_rows",
    "masked_scorer",
    "mean_std",
    "spearman",
    "validate_seeds",
]


@dataclass
class PruningRow:
    """One condition of a pruning table, aggregated over seeds.

    Attributes:
        condition: e.g. ``"without_2_hottest"``.
        accuracy_mean, accuracy_std: test accuracy (std over seeds, ddof=1), in the unit of the
            per-seed values (fractions here; percent in the experiment drivers).
        loss_mean, loss_std: mean test cross-entropy in nats.
        accuracies, losses: the per-seed values.
    """

    condition: str
    accuracy_mean: float
    accuracy_std: float
    loss_mean: float
    loss_std: float
    accuracies: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain dictionary."""
        return asdict(self)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    if not values:
        raise InputError("no values to aggregate: run at least one seed")
    t = torch.tensor(values, dtype=torch.float64)
    std = float(t.std(unbiased=True)) if len(values) > 1 else 0.0
    return float(t.mean()), std


def aggregate_rows(
    per_seed: list[dict[str, tuple[float, float]]], order: list[str]
) -> list[PruningRow]:
    """Turn per-seed ``{condition: (accuracy, loss)}`` into rows in ``order``."""
    rows = []
    for name in order:
        accs = [seed_values[name][0] for seed_values in per_seed]
        losses = [seed_values[name][1] for seed_values in per_seed]
        a_mean, a_std = mean_std(accs)
        l_mean, l_std = mean_std(losses)
        rows.append(PruningRow(name, a_mean, a_std, l_mean, l_std, accs, losses))
    return rows


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (``scipy.stats.spearmanr``: ties share their
    average rank); NaN when either is constant."""
    x = a.detach().double().cpu().flatten().numpy()
    y = b.detach().double().cpu().flatten().numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def validate_seeds(seeds: int) -> list[int]:
    """``[0, ..., seeds-1]`` for a positive integer ``seeds``."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"seeds must be a positive integer, got {seeds!r}")
    return list(range(seeds))


def masked_scorer(model: Any, layer: str, test: tuple, device: Any):
    """``score(mask) -> (test accuracy in [0, 1], test loss)`` of ``model`` with the groups
    ``mask`` of ``layer`` zeroed (:func:`leafscope.thermo.pruning.masked`); each mask is
    evaluated once."""
    from leafscope.thermo.pruning import masked
    from leafscope.training import evaluate

    cache: dict[tuple[int, ...], tuple[float, float]] = {}

    def score(mask: list[int]) -> tuple[float, float]:
        key = tuple(mask)
        if key not in cache:
            with masked(model, layer, mask):
                loss, acc = evaluate(model, test, device=device)
            cache[key] = (float(acc), float(loss))
        return cache[key]

    return score
