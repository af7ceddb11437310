"""Figures of the foliation results (matplotlib, Agg backend; every function returns a Figure).

The report writer and the CLI save them; nothing here writes files except
:func:`save_path_animation`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from leafscope.errors import InputError  # noqa: E402
from leafscope.foliation.brackets import InvolutivityResult  # noqa: E402
from leafscope.foliation.equilibrium import TraceRankResult  # noqa: E402
from leafscope.foliation.paths import PathResult  # noqa: E402
from leafscope.foliation.walks import WalkResult  # noqa: E402
from leafscope.report.figures.samples import (  # noqa: E402
    draw_sample,
    image_array,
    is_image,
    shared_range,
)

__all__ = [
    "accuracy_vs_distance",
    "geodesic_study_figure",
    "involutivity_figure",
    "path_distance_figure",
    "path_strip",
    "save_path_animation",
    "trace_rank_figure",
    "walk_strip",
]


def _frame_indices(n: int, count: int) -> list[int]:
    count = max(1, min(count, n))
    if count == 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})


def _check_index(index: int, n: int, what: str) -> None:
    if not 0 <= index < n:
        raise InputError(f"{what} index {index} out of range: there are {n} (use 0..{n - 1})")


def path_strip(result: PathResult, index: int = 0, frames: int = 8) -> Figure:
    """Recorded points of path ``index`` as a strip, each titled ``label (probability)``.

    Images are drawn in grey or colour (RGB), vectors as bar plots on shared y-limits (see
    :func:`~leafscope.report.figures.samples.draw_sample`).
    """
    _check_index(index, len(result), "path")
    pts, steps = result.points[index], result.point_steps[index]
    if len(pts) == 0:
        raise InputError(f"path {index} has no recorded points: run it first")
    picks = _frame_indices(len(pts), frames)
    fig, axes = plt.subplots(1, len(picks), figsize=(1.6 * len(picks), 2.0), squeeze=False)
    limits = None if is_image(pts[0]) else shared_range(pts[picks])
    for ax, k in zip(axes[0], picks, strict=True):
        s = steps[k]
        draw_sample(ax, pts[k], value_range=limits)
        pred, prob = result.predicted[index][s], result.max_prob[index][s]
        ax.set_title(f"{pred} ({prob:.2f})\nstep {s}", fontsize=8)
    dist = result.distance[index]
    fig.suptitle(
        f"{result.config.method} path: distance {dist[0]:.2f} → {dist[-1]:.2f}", fontsize=9
    )
    fig.tight_layout()
    return fig


def path_distance_figure(result: PathResult) -> Figure:
    """Distance to the end, relative to the start distance, against the step, for every path."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for d in result.distance:
        ax.plot([v / d[0] for v in d], lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("‖x − end‖ / ‖start − end‖")
    ax.set_ylim(bottom=0)
    ax.set_title(f"horizontal paths ({result.config.method}, step {result.config.step})")
    fig.tight_layout()
    return fig


def geodesic_study_figure(studies: dict[str, dict]) -> Figure:
    """The λ-geodesic study (issue 21): per model, the median vertical length of the curve
    (straight segment, then each λ), and per pair the tracked path's final / start distance
    against the greedy path's.

    Args:
        studies: label → the ``geodesic`` document of
            :func:`leafscope.experiments.leafpath.geodesic_experiment` (its ``greedy`` and
            ``geodesic`` summaries).
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    top = 0.0
    for label, study in studies.items():
        geo = study["geodesic"]
        stages = geo["stages"]
        values = [geo["median_start_vertical_length"]]
        values += [s["median_vertical_length"] for s in stages]
        left.plot(range(len(values)), values, marker="o", label=label)
        greedy, tracked = study["greedy"]["relative_distance"], geo["relative_distance"]
        right.scatter(greedy, tracked, s=14, label=label)
        top = max(top, *greedy, *tracked)
    names = ["straight"] + [f"λ = {s['penalty']:g}" for s in stages]
    left.set_xticks(range(len(names)), names)
    left.set_ylim(0, 1)
    left.set_ylabel("vertical length / distance (median)")
    left.set_title("the curve's part outside D")
    left.legend(fontsize=7)
    right.plot([0, top], [0, top], color="grey", lw=0.6, ls="--")
    right.set_xlabel("greedy path: final / start distance")
    right.set_ylabel("tracked geodesic: final / start")
    right.set_title("per pair (connected: final ≤ 1.0, i.e. ≈ 0.1 of ~10)", fontsize=9)
    fig.tight_layout()
    return fig


def save_path_animation(
    result: PathResult,
    path: str | os.PathLike,
    index: int = 0,
    max_frames: int = 120,
    fps: int = 12,
) -> Path | None:
    """Write an animated GIF of path ``index`` (matplotlib PillowWriter).

    Returns:
        The file written, or None when Pillow is not installed or the points are vectors (an
        animation of images only; nothing is written).
    """
    _check_index(index, len(result), "path")
    if len(result.points[index]) == 0 or not is_image(result.points[index][0]):
        return None
    if importlib.util.find_spec("PIL") is None:
        return None
    from matplotlib.animation import FuncAnimation, PillowWriter

    pts, steps = result.points[index], result.point_steps[index]
    picks = _frame_indices(len(pts), max_frames)
    fig, ax = plt.subplots(figsize=(2.6, 2.9))
    first, cmap = image_array(pts[picks[0]])
    im = ax.imshow(first, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])

    def update(k: int):
        im.set_data(image_array(pts[k])[0])
        s = steps[k]
        ax.set_title(
            f"{result.predicted[index][s]} ({result.max_prob[index][s]:.2f}) step {s}", fontsize=9
        )
        return (im,)

    anim = FuncAnimation(fig, update, frames=picks, blit=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(str(path), writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path


def walk_strip(walk: WalkResult, index: int = 0, frames: int = 8) -> Figure:
    """Recorded points of vertical walk ``index``, titled ``label (probability)`` and distance.

    Pixels outside [0, 1] (an unclamped walk) are shown clipped; vectors are drawn as bar plots
    on shared y-limits.
    """
    _check_index(index, walk.points.shape[0], "walk")
    picks = _frame_indices(walk.points.shape[1], frames)
    fig, axes = plt.subplots(1, len(picks), figsize=(1.6 * len(picks), 2.0), squeeze=False)
    limits = None if walk.points.dim() > 3 else shared_range(walk.points[index, picks])
    for ax, k in zip(axes[0], picks, strict=True):
        draw_sample(ax, walk.points[index, k], value_range=limits)
        ax.set_title(
            f"{int(walk.predicted[index, k])} ({float(walk.max_prob[index, k]):.2f})\n"
            f"d={float(walk.distance[index, k]):.1f}",
            fontsize=8,
        )
    fig.suptitle("vertical walk (inside ker G)", fontsize=9)
    fig.tight_layout()
    return fig


def accuracy_vs_distance(vertical: list[dict], random: list[dict] | None = None) -> Figure:
    """Accuracy against distance moved: vertical walks next to random straight lines.

    Args:
        vertical: ``[{distance, accuracy}]`` (e.g. ``WalkExperimentResult.vertical``).
        random: the same for random directions of the same length.
    """
    if not vertical:
        raise InputError("no vertical walk records to plot: run walk_experiment with points > 0")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(
        [r["distance"] for r in vertical],
        [100 * r["accuracy"] for r in vertical],
        "o-",
        label="vertical (ker G)",
    )
    if random:
        ax.plot(
            [r["distance"] for r in random],
            [100 * r["accuracy"] for r in random],
            "s--",
            label="random direction",
        )
    ax.set_xlabel("distance moved ‖x − x₀‖ (pixels in [0, 1])")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    ax.legend()
    fig.tight_layout()
    return fig


def involutivity_figure(results: dict[str, InvolutivityResult]) -> Figure:
    """Mean log10 singular values of ``[X_a ; [X_a, X_b]]`` per model, with the rank marks."""
    if not results:
        raise InputError("no involutivity results to plot")
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, res in results.items():
        s = res.singular_values
        logs = torch.log10((s / s[:, :1]).clamp_min(1e-300)).mean(dim=0)
        ax.plot(
            range(1, len(logs) + 1),
            logs.numpy(),
            ".-",
            label=f"{name} ({res.mean_dim_with_brackets:.2f})",
        )
    first = next(iter(results.values()))
    ax.axhline(
        torch.log10(torch.tensor(first.rtol)).item(), color="grey", ls=":", label="tolerance"
    )
    ax.axvline(first.fields_singular_values.shape[1] - 1, color="grey", lw=0.6)
    ax.set_xlabel("index k")
    ax.set_ylabel("mean log10 σ_k / σ_1")
    ax.set_title("span{D, [D, D]}: singular values")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def trace_rank_figure(result: TraceRankResult) -> Figure:
    """Left: log10 tr G per checkpoint (box plots). Right: rank histogram per checkpoint."""
    k = len(result.checkpoints)
    labels = [f"e{e}" for e in result.epochs]
    if len(set(labels)) < k:
        labels = [f"s{s}" for s in result.steps]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    logs = torch.log10(result.traces.clamp_min(1e-300)).numpy()
    ax1.boxplot(list(logs), showfliers=False)
    ax1.set_xticks(range(1, k + 1), labels, rotation=45, fontsize=7)
    ax1.set_ylabel("log10 tr G")
    ax1.set_title("trace of G across training")
    hist = result.rank_histogram().double()
    frac = hist / hist.sum(dim=1, keepdim=True)
    bottom = torch.zeros(k, dtype=torch.float64)
    cmap = plt.get_cmap("viridis", hist.shape[1])
    for r in range(hist.shape[1]):
        if frac[:, r].sum() == 0:
            continue
        ax2.bar(range(k), frac[:, r].numpy(), bottom=bottom.numpy(), color=cmap(r), label=str(r))
        bottom += frac[:, r]
    ax2.set_xticks(range(k), labels, rotation=45, fontsize=7)
    ax2.set_ylabel("fraction of points")
    ax2.set_title(f"rank of G (eigenvalues > {result.atol:g})")
    ax2.legend(title="rank", fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig
