"""The temperature figures show their results: one curve per group over training, one bar per
pruning condition beside the published values, one curve per GNN pruning criterion."""

import numpy as np
import pytest

from leafscope.errors import InputError
from leafscope.experiments.thermo.common import PruningRow
from leafscope.experiments.thermo.gnn import CurvePoint, GnnThermoResult
from leafscope.experiments.thermo.lenet import LenetThermoResult
from leafscope.report.figures import thermo as figures
from leafscope.thermo.monitor import TemperatureHistory


def _history(trace: bool) -> TemperatureHistory:
    epochs = [[1e-4, 2e-4, 3e-4], [2e-4, 1e-4, 5e-4]]
    return TemperatureHistory(
        layers={"conv1": "filters"},
        n_groups={"conv1": 3},
        group_size={"conv1": 9},
        epoch_temperatures={"conv1": epochs},
        steps_per_epoch=[5, 7],
        trace_steps=[2, 4, 6] if trace else [],
        trace={"conv1": [[1e-3, 1e-4, 1e-5], [2e-3, 2e-4, 2e-5], [3e-3, 3e-4, 3e-5]]}
        if trace
        else {},
        optimizer={"name": "SGD"},
    )


def test_temperature_over_training_one_curve_per_group():
    ax = figures.temperature_over_training(_history(trace=False)).axes[0]
    assert len(ax.lines) == 3
    for g, line in enumerate(ax.lines):
        assert list(line.get_xdata()) == [5, 12]  # steps at the end of each epoch
        assert list(line.get_ydata()) == [[1e-4, 2e-4, 3e-4][g], [2e-4, 1e-4, 5e-4][g]]
        assert line.get_label() == f"filter {g}"
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "optimizer step (end of epoch)"
    assert ax.get_title() == "conv1: temperature per group (SGD)"
    ax = figures.temperature_over_training(_history(trace=True)).axes[0]
    assert list(ax.lines[1].get_xdata()) == [2, 4, 6]
    assert list(ax.lines[1].get_ydata()) == [1e-4, 2e-4, 3e-4]
    with pytest.raises(InputError, match="fc1"):
        figures.temperature_over_training(_history(trace=False), "fc1")


def _row(name: str, acc: float) -> PruningRow:
    return PruningRow(name, acc, 1.0, 0.5, 0.1, [acc], [0.5])


def test_pruning_table_bars_are_the_measured_accuracies_beside_the_published_ones():
    rows = [_row("original", 98.0), _row("without_2_hottest", 97.0), _row("new_control", 50.0)]
    published = [{"condition": "original", "accuracy_mean": 98.8},
                 {"condition": "without_2_hottest", "accuracy_mean": 98.5}]  # fmt: skip
    result = LenetThermoResult({}, rows, published=published)
    ax = figures.figure_for(result).axes[0]
    assert [p.get_height() for p in ax.patches] == [98.0, 97.0, 50.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [r.condition for r in rows]
    (marks,) = ax.collections[-1:]
    np.testing.assert_allclose(marks.get_offsets(), [[0, 98.8], [1, 98.5]])
    assert ax.get_ylim() == (0, 100) and ax.get_ylabel() == "test accuracy (%)"


def test_pruning_curves_one_curve_per_criterion_and_the_published_ones():
    curves = [
        CurvePoint(c, r, base - r / 10, 0.5, [base - r / 10])
        for c, base in (("cold", 80.0), ("hot", 70.0))
        for r in (50.0, 0.0, 100.0)  # unsorted: the figure sorts by ratio
    ]
    published = {"ratio": [0, 100], "cold": [95, 90], "hot": [95, 50]}
    config = {"dataset": "cora", "task": "node"}
    result = GnnThermoResult(config, "accuracy", curves, published=published)
    ax = figures.figure_for(result).axes[0]
    assert [c.get_label() for c in ax.containers] == ["cold", "hot"]  # error bar curves
    for container, base in zip(ax.containers, (80.0, 70.0), strict=True):
        line = container.lines[0]
        assert list(line.get_xdata()) == [0.0, 50.0, 100.0]
        assert list(line.get_ydata()) == [base, base - 5, base - 10]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert [list(ln.get_ydata()) for ln in dashed] == [[95, 90], [95, 50]]
    assert ax.get_ylabel() == "test accuracy (%)" and "cora (node)" in ax.get_title()
    with pytest.raises(InputError, match="no figure"):
        figures.figure_for(object())
