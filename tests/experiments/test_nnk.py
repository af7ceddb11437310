"""NNK experiments across training: geometry of a run's checkpoints, early-stopping comparison."""

from __future__ import annotations

import pytest
import torch

from leafscope.errors import CheckpointError
from leafscope.experiments.nnk import compare_early_stopping, run_geometry
from leafscope.models import build_model
from leafscope.nnk.geometry import loo_test_correlation
from leafscope.nnk.stopping import validation_stopping_epoch
from leafscope.training import fit


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
    with pytest.raises(CheckpointError):
        run_geometry(tmp_path / "none", xs, ys, ["fc1"])


def test_run_geometry_with_step_checkpoints_uses_steps(tmp_path):
    torch.manual_seed(0)
    x, y = _blobs(64)
    model = build_model("mlp", hidden=(16,), num_classes=10)
    fit(model, (x, y), epochs=2, lr=0.05, batch_size=16, checkpoint_every_steps=2,
        out_dir=tmp_path, progress=False)  # fmt: skip
    g = run_geometry(tmp_path, x, y, ["fc1"], k=8, step_checkpoints=True)
    # 4 steps per epoch, a step checkpoint every 2; at steps 4 and 8 the epoch checkpoint
    # holds the same weights and is measured once
    assert [(e.epoch, e.step) for e in g.epochs] == [(0, 2), (1, 4), (1, 6), (2, 8)]
    only_epochs = run_geometry(tmp_path, x, y, ["fc1"], k=8)
    assert [e.epoch for e in only_epochs.epochs] == [1, 2]
    assert only_epochs.epochs[-1].loo_error == g.epochs[-1].loo_error
    no_orientation = run_geometry(tmp_path, x, y, ["fc1"], k=8, orientation=False)
    assert all(e.layers["fc1"]["orientation"] is None for e in no_orientation.epochs)
    assert all(e.layers["fc1"]["orientation"] for e in only_epochs.epochs)


def test_compare_early_stopping_report_is_consistent(tmp_path):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(150) % 3
    x = torch.randn(3, 1, 28, 28, generator=gen)[y] + torch.randn(150, 1, 28, 28, generator=gen)
    x = x.clamp(0, 1)
    r = compare_early_stopping((x[:90], y[:90]), (x[90:120], y[90:120]), (x[120:], y[120:]),
                               tmp_path, epochs=3, points=40, k=8, lr=0.01)  # fmt: skip
    v, cw = r["validation"], r["cw_deepnnk"]
    assert (v["stop_epoch"], v["best_epoch"]) == validation_stopping_epoch(v["val_accuracy"], 2)
    assert v["test_accuracy_at_best"] == v["test_accuracy"][v["best_epoch"] - 1]
    assert len(cw["channel_loo_error"]) == cw["stop_epoch"] <= 3
    assert len(cw["frozen_at"]) == 16  # LeNet conv2 channels
    assert 0 <= cw["test_accuracy"] <= 1
