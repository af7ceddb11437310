"""The foliation figures show their results: the recorded images of paths and walks with their
labels, the relative distances, the accuracy curves, the singular values of the brackets, the
trace boxes and the stacked rank fractions."""

import importlib.util

import numpy as np
import pytest
import torch

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


def _image(ax) -> np.ndarray:
    (im,) = ax.images
    return np.asarray(im.get_array())


def test_trace_rank_figure(tmp_path):
    torch.manual_seed(0)
    paths = []
    for epoch in (0, 1):
        model = build_model("mlp", hidden=(8,), num_classes=3, image_size=8)
        path = tmp_path / f"epoch_{epoch:04d}.pt"
        paths.append(save_checkpoint(path, model=model, epoch=epoch, step=epoch, history=[]))
    res = trace_rank_across_checkpoints(paths, torch.rand(6, 1, 8, 8))
    fig = figures.trace_rank_figure(res)
    left, right = fig.axes[:2]
    # left: one box per checkpoint, its median the median log10 trace of that checkpoint
    flat = [ln for ln in left.lines if len(set(ln.get_ydata())) == 1]  # caps and medians
    for k, logs in enumerate(torch.log10(res.traces).numpy(), start=1):
        at_k = [ln.get_ydata()[0] for ln in flat if np.mean(ln.get_xdata()) == pytest.approx(k)]
        assert np.median(logs) == pytest.approx(sorted(at_k)[1])  # between the two caps
        assert min(at_k) == pytest.approx(logs.min()) and max(at_k) == pytest.approx(logs.max())
    assert [t.get_text() for t in left.get_xticklabels()] == ["e0", "e1"]
    assert left.get_ylabel() == "log10 tr G"
    # right: stacked bars of the rank fractions, summing to one per checkpoint
    tops = {}
    for bar in right.patches:
        x = round(bar.get_x() + bar.get_width() / 2)
        tops[x] = max(tops.get(x, 0.0), bar.get_y() + bar.get_height())
    assert tops == pytest.approx({0: 1.0, 1: 1.0})
    hist = res.rank_histogram().double()
    frac = (hist / hist.sum(dim=1, keepdim=True)).numpy()
    heights = sorted(b.get_height() for b in right.patches)
    assert heights == pytest.approx(sorted(frac[frac > 0].tolist()))


@pytest.fixture(scope="module")
def paths_and_walk():
    torch.manual_seed(1)
    model = tiny_mlp(n_in=64, n_classes=3)
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    res = horizontal_paths(model, a, b, PathConfig(max_steps=5))
    walk = vertical_walk(model, a, WalkConfig(steps=4, record_every=2))
    return model, a, res, walk


def test_path_strip_shows_the_recorded_points_with_their_labels(paths_and_walk):
    _, _, res, _ = paths_and_walk
    fig = figures.path_strip(res, 1, frames=4)
    pts, steps = res.points[1], res.point_steps[1]
    picks = figures._frame_indices(len(pts), 4)
    assert len(fig.axes) == len(picks) and picks[0] == 0 and picks[-1] == len(pts) - 1
    for ax, k in zip(fig.axes, picks, strict=True):
        np.testing.assert_allclose(_image(ax), pts[k, 0].clamp(0, 1).numpy(), rtol=1e-6)
        s = steps[k]
        assert ax.get_title() == f"{res.predicted[1][s]} ({res.max_prob[1][s]:.2f})\nstep {s}"
    d = res.distance[1]
    assert f"distance {d[0]:.2f} → {d[-1]:.2f}" in fig._suptitle.get_text()


def test_path_distance_figure_one_relative_curve_per_path(paths_and_walk):
    _, _, res, _ = paths_and_walk
    ax = figures.path_distance_figure(res).axes[0]
    assert len(ax.lines) == len(res)
    for line, d in zip(ax.lines, res.distance, strict=True):
        np.testing.assert_allclose(line.get_ydata(), np.asarray(d) / d[0])
        assert line.get_ydata()[0] == 1.0
    assert ax.get_xlabel() == "step" and ax.get_ylim()[0] == 0


def test_walk_strip_shows_the_walk_of_one_point(paths_and_walk):
    _, _, _, walk = paths_and_walk
    fig = figures.walk_strip(walk, 0)
    picks = figures._frame_indices(walk.points.shape[1], 8)
    assert len(fig.axes) == len(picks) == walk.points.shape[1]
    for ax, k in zip(fig.axes, picks, strict=True):
        want = walk.points[0, k, 0].float().clamp(0, 1).numpy()
        np.testing.assert_allclose(_image(ax), want, rtol=1e-6)
        assert ax.get_title().startswith(f"{int(walk.predicted[0, k])} (")
        assert f"d={float(walk.distance[0, k]):.1f}" in ax.get_title()


def test_accuracy_vs_distance_plots_both_walks_in_percent(paths_and_walk):
    _, _, _, walk = paths_and_walk
    curve = walk.curve()
    shifted = [{**r, "distance": r["distance"] + 1, "accuracy": 0.5} for r in curve]
    ax = figures.accuracy_vs_distance(curve, shifted).axes[0]
    vertical, random = ax.lines
    assert list(vertical.get_xdata()) == [r["distance"] for r in curve]
    assert list(vertical.get_ydata()) == [100 * r["accuracy"] for r in curve]
    assert list(random.get_xdata()) == [r["distance"] for r in shifted]
    assert list(random.get_ydata()) == [50.0] * len(curve)
    assert ax.get_ylim() == (0, 102) and ax.get_ylabel() == "test accuracy (%)"
    assert len(figures.accuracy_vs_distance(curve).axes[0].lines) == 1


def test_involutivity_figure_plots_the_mean_normalised_log_singular_values(paths_and_walk):
    model, a, _, _ = paths_and_walk
    inv = involutivity(model, a)
    ax = figures.involutivity_figure({"tanh": inv}).axes[0]
    curve, tolerance, fields = ax.lines
    s = inv.singular_values
    want = torch.log10((s / s[:, :1]).clamp_min(1e-300)).mean(dim=0).numpy()
    np.testing.assert_allclose(curve.get_ydata(), want, rtol=1e-6)
    assert list(curve.get_xdata()) == list(range(1, len(want) + 1))
    assert curve.get_ydata()[0] == 0.0  # σ_1 / σ_1
    assert tolerance.get_ydata()[0] == pytest.approx(np.log10(inv.rtol))
    assert fields.get_xdata()[0] == inv.fields_singular_values.shape[1] - 1
    assert ax.get_legend().get_texts()[0].get_text().startswith("tanh (")


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


def test_geodesic_study_figure_draws_the_stage_medians_and_the_pairs():
    study = {
        "greedy": {"relative_distance": [0.7, 0.6, 0.8]},
        "geodesic": {
            "median_start_vertical_length": 0.9,
            "stages": [
                {"penalty": 10.0, "median_vertical_length": 0.8},
                {"penalty": 100.0, "median_vertical_length": 0.75},
            ],
            "relative_distance": [0.65, 0.62, 0.79],
        },
    }
    fig = figures.geodesic_study_figure({"a": study})
    left, right = fig.axes
    np.testing.assert_allclose(left.lines[0].get_ydata(), [0.9, 0.8, 0.75])
    assert [t.get_text() for t in left.get_xticklabels()] == ["straight", "λ = 10", "λ = 100"]
    np.testing.assert_allclose(right.collections[0].get_offsets(), [[0.7, 0.65], [0.6, 0.62],
                                                                   [0.8, 0.79]])  # fmt: skip


def test_the_leafpath_figure_command_draws_the_committed_studies(tmp_path):
    """``python -m leafscope.report.leafpath`` on the study's committed JSON files."""
    from pathlib import Path

    from leafscope.report.leafpath import main

    root = Path(__file__).resolve().parents[2] / "docs" / "figures" / "leafpath"
    studies = (
        f"GeLU={root / 'geodesic_gelu_20pairs.json'},ReLU={root / 'geodesic_relu_20pairs.json'}"
    )
    assert main(["--studies", studies, "--figure", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        main(["--studies", f"x={tmp_path / 'missing.json'}", "--figure", str(tmp_path / "h.png")])
