"""Trace/rank of G across checkpoints and the figure functions."""

import importlib.util

import torch
from matplotlib.figure import Figure

from leafscope.foliation import (
    PathConfig,
    WalkConfig,
    figures,
    horizontal_paths,
    involutivity,
    trace_rank_across_checkpoints,
    vertical_walk,
)
from leafscope.models import build_model
from leafscope.testing import tiny_mlp
from leafscope.training import save_checkpoint


def test_saturated_checkpoint_has_small_trace_and_low_rank(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", activation="gelu", hidden=(32,), num_classes=4, image_size=8)
    paths = [save_checkpoint(tmp_path / "epoch_0000.pt", model=model, epoch=0, step=0, history=[])]
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor([60.0, 0.0, 0.0, 0.0]))
    paths.append(
        save_checkpoint(tmp_path / "epoch_0001.pt", model=model, epoch=1, step=5, history=[])
    )
    images = torch.rand(10, 1, 8, 8)
    res = trace_rank_across_checkpoints(paths[::-1], images, atol=1e-14)
    assert res.epochs == [0, 1]
    assert (res.traces[1] < 1e-10 * res.traces[0]).all()
    assert (res.ranks[0] == 3).all() and (res.ranks[1] == 0).all()
    assert res.rank_histogram().tolist() == [[0, 0, 0, 10], [10, 0, 0, 0]]
    js = res.to_json()
    assert js["checkpoints"][1]["mean_rank"] == 0.0
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
