"""The foliation figures return Figures for real path, walk, bracket and trace/rank results."""

import importlib.util

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
    walk = vertical_walk(model, a, WalkConfig(steps=4, record_every=2))
    assert isinstance(figures.walk_strip(walk, 0), Figure)
    curve = walk.curve()
    assert isinstance(figures.accuracy_vs_distance(curve, curve), Figure)
    inv = involutivity(model, a)
    assert isinstance(figures.involutivity_figure({"tanh": inv}), Figure)


def test_path_animation_frames(tmp_path):
    torch.manual_seed(2)
    model = tiny_mlp(n_in=64, n_classes=3)
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    res = horizontal_paths(model, a, b, PathConfig(max_steps=6))
    n_points = len(res.points[1])
    assert n_points >= 4
    target = tmp_path / "sub" / "p.gif"
    gif = figures.save_path_animation(res, target, index=1, max_frames=3, fps=10)
    if importlib.util.find_spec("PIL") is None:
        assert gif is None and not target.exists()
        return
    from PIL import Image

    assert gif == target
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 3  # first, middle and last recorded point
        assert im.info["duration"] == 100  # 1000 ms / fps
    with Image.open(
        figures.save_path_animation(res, tmp_path / "all.gif", index=1, max_frames=100)
    ) as im:
        assert im.n_frames == n_points  # capped at the recorded points
