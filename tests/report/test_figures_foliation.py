"""The foliation figures return Figures for real path, walk, bracket and trace/rank results."""

import torch
from matplotlib.figure import Figure

from leafscope.foliation import (
    PathConfig,
    WalkConfig,
    horizontal_paths,
    involutivity,
    trace_rank_across_checkpoints,
    vertical_walk,
)
from leafscope.models import build_model
from leafscope.report.figures import foliation as figures
from leafscope.testing import tiny_mlp
from leafscope.training import save_checkpoint


def test_trace_rank_figure(tmp_path):
    model = build_model("mlp", hidden=(8,), num_classes=3, image_size=8)
    ckpt = save_checkpoint(tmp_path / "epoch_0000.pt", model=model, epoch=0, step=0, history=[])
    res = trace_rank_across_checkpoints([ckpt], torch.rand(4, 1, 8, 8))
    assert isinstance(figures.trace_rank_figure(res), Figure)


def test_figures_return_figures(tmp_path):
    torch.manual_seed(1)
    model = tiny_mlp(n_in=64, n_classes=3)
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    res = horizontal_paths(model, a, b, PathConfig(max_steps=5))
    assert isinstance(figures.path_strip(res, 1, frames=4), Figure)
    assert isinstance(figures.path_distance_figure(res), Figure)
    gif = figures.save_path_animation(res, tmp_path / "p.gif", max_frames=3)
    assert gif is None or gif.stat().st_size > 0
    walk = vertical_walk(model, a, WalkConfig(steps=4, record_every=2))
    assert isinstance(figures.walk_strip(walk, 0), Figure)
    curve = walk.curve()
    assert isinstance(figures.accuracy_vs_distance(curve, curve), Figure)
    inv = involutivity(model, a)
    assert isinstance(figures.involutivity_figure({"tanh": inv}), Figure)
