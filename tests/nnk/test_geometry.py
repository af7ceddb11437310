"""Model geometry across layers and epochs: MGM summaries, DeepNNK LOO, LOO-vs-test correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leafscope.errors import CheckpointError, InputError
from leafscope.models import build_model
from leafscope.nnk.geometry import (
    last_hidden_layer,
    layer_geometry,
    loo_test_correlation,
    run_geometry,
)
from leafscope.report.figures.nnk import plot_loo_vs_test, plot_mgm_distributions, plot_mgm_epochs
from leafscope.testing import tiny_mlp
from leafscope.training import fit


def test_correlation_hand_example():
    # deviations (0.1, 0, -0.1) and (2/15, 1/30, -1/6): cov 0.03, variances 0.02 and 0.14/3
    r = loo_test_correlation([0.3, 0.2, 0.1], [0.4, 0.3, 0.1])
    assert r == pytest.approx(0.03 / np.sqrt(0.02 * 0.14 / 3), abs=1e-12)
    assert loo_test_correlation([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert loo_test_correlation([0.1, 0.2], [0.3, 0.4]) is None  # fewer than 3 epochs
    assert loo_test_correlation([0.1, 0.1, 0.1], [0.3, 0.4, 0.5]) is None  # constant
    with pytest.raises(InputError, match="one per epoch"):
        loo_test_correlation([0.1, 0.2, 0.3], [0.1])


def test_last_hidden_layer():
    assert last_hidden_layer(build_model("lenet")) == "act4"
    assert last_hidden_layer(tiny_mlp()) == "4"
    with pytest.raises(InputError, match="loo_layer"):
        last_hidden_layer(torch.nn.Sequential(torch.nn.Linear(3, 2)))


def test_layer_geometry_counts_and_bounds():
    torch.manual_seed(0)
    x = torch.randn(80, 12)
    out = layer_geometry(tiny_mlp(), x, ["1", "3"], k=10)
    for name in ("1", "3"):
        s = out[name]
        assert 1 <= s["n_neighbors"]["min"] and s["n_neighbors"]["max"] <= 10
        assert sum(s["n_neighbors"]["hist"]["counts"]) == 80
        assert 0 <= s["diameter"]["max"] <= 2  # unit vectors (cosine kernel)
        assert s["local_dim"]["max"] <= s["n_neighbors"]["max"]
    with pytest.raises(InputError, match="unknown layer"):
        layer_geometry(tiny_mlp(), x, ["nope"])


def _blobs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.randn(3, 1, 28, 28, generator=gen)
    x = centers[y] + 0.8 * torch.randn(n, 1, 28, 28, generator=gen)
    return x.clamp(-3, 3), y


def test_run_geometry_loo_never_uses_point_and_correlation(tmp_path):
    torch.manual_seed(0)
    x, y = _blobs(90)
    model = build_model("mlp", hidden=(16,), num_classes=10)
    fit(model, (x, y), epochs=3, lr=0.05, out_dir=tmp_path, progress=False)
    xs, ys = x[:60].clone(), y[:60].clone()
    ys[0] = 9  # a label nobody else has: LOO can never predict it
    xs[2] = xs[1]
    ys[1], ys[2] = 0, 1  # duplicates with different labels (no NaN, own label unused)
    g = run_geometry(tmp_path, xs, ys, ["fc1"], k=8, test_images=x[60:], test_labels=y[60:],
                     include_initial=True)  # fmt: skip
    assert [e.epoch for e in g.epochs] == [0, 1, 2, 3]
    assert g.loo_layer == "drop1"  # dropout: identity in eval mode, feeds fc2
    assert all(e.loo_error >= 1 / 60 for e in g.epochs)  # point 0 is always wrong
    assert g.pearson == loo_test_correlation(g.loo_errors, g.test_errors)
    js = g.to_json()
    assert js["pearson_loo_vs_test"] == g.pearson
    assert js["epochs"][0]["layers"]["fc1"]["n_neighbors"]["max"] <= 8
    for fig in (plot_mgm_distributions(g), plot_mgm_epochs(g), plot_loo_vs_test(g)):
        assert len(fig.axes) >= 1
    with pytest.raises(InputError, match="epoch 7"):
        plot_mgm_distributions(g, epoch=7)
    with pytest.raises(CheckpointError):
        run_geometry(tmp_path / "none", xs, ys, ["fc1"])


def test_run_geometry_with_step_checkpoints_uses_steps(tmp_path):
    from leafscope.report.figures.nnk import _x_axis

    torch.manual_seed(0)
    x, y = _blobs(64)
    model = build_model("mlp", hidden=(16,), num_classes=10)
    fit(model, (x, y), epochs=2, lr=0.05, batch_size=16, checkpoint_every_steps=2,
        out_dir=tmp_path, progress=False)  # fmt: skip
    g = run_geometry(tmp_path, x, y, ["fc1"], k=8, step_checkpoints=True)
    # 4 steps per epoch, a step checkpoint every 2; at steps 4 and 8 the epoch checkpoint
    # holds the same weights and is measured once
    assert [(e.epoch, e.step) for e in g.epochs] == [(0, 2), (1, 4), (1, 6), (2, 8)]
    assert _x_axis(g) == ([2, 4, 6, 8], "step")
    only_epochs = run_geometry(tmp_path, x, y, ["fc1"], k=8)
    assert _x_axis(only_epochs) == ([1, 2], "epoch")
    assert only_epochs.epochs[-1].loo_error == g.epochs[-1].loo_error
    no_orientation = run_geometry(tmp_path, x, y, ["fc1"], k=8, orientation=False)
    assert len(plot_mgm_epochs(no_orientation).axes) == 3  # no empty orientation panel
    assert len(plot_mgm_distributions(only_epochs).axes) == 4
