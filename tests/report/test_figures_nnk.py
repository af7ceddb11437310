"""The NNK figures: panels follow the measured MGMs, the x axis follows the checkpoints, and the
stability and invariance plots draw one mark per layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leafscope.errors import InputError
from leafscope.experiments.nnk import EpochGeometry, RunGeometry
from leafscope.nnk.geometry import mgm_summary
from leafscope.nnk.invariance import AugmentationGeometry
from leafscope.nnk.stability import geometric_stability
from leafscope.report.figures import nnk as figures
from leafscope.testing import tiny_mlp


def _geometry(steps: list[tuple[int, int]], orientation: bool = True) -> RunGeometry:
    gen = torch.Generator().manual_seed(0)
    g = RunGeometry("run", ["a", "b"], "b", 5, "cosine", 12)
    for i, (epoch, step) in enumerate(steps):
        layers = {
            name: mgm_summary(torch.randn(12, 4, generator=gen), 5, "cosine", orientation)
            for name in g.layers
        }
        g.epochs.append(EpochGeometry(epoch, step, f"c{i}.pt", layers, 0.5 - 0.1 * i, 0.4))
    return g


def test_x_axis_is_the_epoch_unless_epochs_repeat():
    assert figures._x_axis(_geometry([(1, 4), (2, 8)])) == ([1, 2], "epoch")
    assert figures._x_axis(_geometry([(0, 2), (1, 4), (1, 6)])) == ([2, 4, 6], "step")


def test_one_panel_per_measured_mgm():
    full, plain = _geometry([(1, 4), (2, 8)]), _geometry([(1, 4), (2, 8)], orientation=False)
    assert len(figures.plot_mgm_distributions(full).axes) == 4
    assert len(figures.plot_mgm_epochs(plain).axes) == 3  # no empty orientation panel
    assert len(figures.plot_mgm_distributions(plain, epoch=1).axes) == 3
    with pytest.raises(InputError, match="epoch 7"):
        figures.plot_mgm_distributions(full, epoch=7)


def test_mgm_panels_plot_the_summaries_of_each_layer():
    g = _geometry([(1, 4), (2, 8)])
    fig = figures.plot_mgm_epochs(g)
    for ax in fig.axes:
        metric = ax.get_title()
        assert [c.get_label() for c in ax.containers] == g.layers  # one curve per layer
        for container, name in zip(ax.containers, g.layers, strict=True):
            line = container.lines[0]
            assert list(line.get_xdata()) == [1, 2] and ax.get_xlabel() == "epoch"
            want = [e.layers[name][metric]["mean"] for e in g.epochs]
            assert list(line.get_ydata()) == pytest.approx(want)
    fig = figures.plot_mgm_distributions(g, epoch=1)
    for ax in fig.axes:  # histograms as fractions of the nodes, one per layer
        metric = ax.get_title()
        assert len(ax.patches) == len(g.layers)
        for stairs, name in zip(ax.patches, g.layers, strict=True):
            hist = g.epochs[0].layers[name][metric]["hist"]
            counts = np.asarray(hist["counts"], dtype=float)
            values, edges, _ = stairs.get_data()
            np.testing.assert_allclose(values, counts / counts.sum())
            np.testing.assert_allclose(edges, hist["edges"])
        assert ax.get_ylabel() == "fraction of nodes"
    assert "epoch 1 (step 4, 12 points)" in fig._suptitle.get_text()


def test_loo_vs_test_draws_both_series():
    g = _geometry([(1, 4), (2, 8), (3, 12)])
    ax = figures.plot_loo_vs_test(g).axes[0]
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [g.loo_errors, g.test_errors]


def test_stability_and_invariance_plots():
    models = [tiny_mlp(seed=0), tiny_mlp(seed=1)]
    result = geometric_stability(
        models, torch.randn(30, 12, generator=torch.Generator().manual_seed(0)), ["1", "3"], k=5
    )
    fig = figures.plot_stability(result)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 3 * 2  # 3 bars per layer
    summary = [result[n].summary() for n in ("1", "3")]
    heights = [p.get_height() for p in fig.axes[0].patches]
    want = [s[key] for key in ("nnk_jaccard", "knn_jaccard", "nnk_chance") for s in summary]
    assert heights == pytest.approx(want)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "3"]
    assert fig.axes[0].get_ylim() == (0, 1)
    rng = np.random.default_rng(0)
    geo = {n: AugmentationGeometry(n, rng.random(5), rng.random(5), np.ones(5)) for n in "xy"}
    ax = figures.plot_invariance({"plain": geo, "augmented": geo}).axes[0]
    assert len(ax.get_lines()) == 2
    assert list(ax.get_lines()[0].get_ydata()) == [
        geo["x"].diameter.mean(),
        geo["y"].diameter.mean(),
    ]
