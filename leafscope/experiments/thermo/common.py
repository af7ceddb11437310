"""Shared pieces of the thermodynamic pruning experiments (moved to
:mod:`leafscope.thermo.tables`; re-exported here), and the percent scale of their results."""

from __future__ import annotations

from typing import Any

from leafscope.thermo.tables import (
    PruningRow,
    aggregate_rows,
    mean_std,
    spearman,
    validate_seeds,
)

__all__ = [
    "PruningRow",
    "aggregate_rows",
    "in_percent",
    "mean_std",
    "spearman",
    "validate_seeds",
]


def in_percent(values: dict[Any, tuple[float, float]]) -> dict[Any, tuple[float, float]]:
    """``{condition: (accuracy, loss)}`` with the accuracy fractions as percentages."""
    return {key: (100.0 * acc, loss) for key, (acc, loss) in values.items()}
