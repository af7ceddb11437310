"""Figures of the applications (matplotlib Agg; every function returns a Figure, saves nothing)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from leafscope.applications.metrics import roc_points  # noqa: E402
from leafscope.report.figures.samples import draw_sample, is_image, shared_range  # noqa: E402

__all__ = ["denoising_strips", "image_grid", "roc_curves", "spectra_histograms"]


def spectra_histograms(log10_eigenvalues: dict[str, list[list[float]]], bins: int = 40) -> Figure:
    """Histograms of log10 λ_1 (highest) and log10 λ_{C-1} (lowest nonzero) per data set.

    Args:
        log10_eigenvalues: data set → per-point log10 eigenvalues (N, C-1), e.g.
            ``TransferResult.log10_eigenvalues``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    for name, logs in log10_eigenvalues.items():
        a = np.asarray(logs)
        for ax, col in zip(axes, (0, -1), strict=True):
            ax.hist(a[:, col], bins=bins, histtype="step", density=True, label=name)
    axes[0].set_xlabel("log10 highest eigenvalue λ_1")
    axes[1].set_xlabel("log10 lowest nonzero eigenvalue")
    for ax in axes:
        ax.set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.suptitle("Spectra of G under one model, per data set")
    return fig


def roc_curves(results: list, out_dataset: str, max_detectors: int = 10) -> Figure:
    """ROC curves (in = positive) of every detector on one out set, from
    :class:`OODResult` objects holding scores (the first seed of each detector)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2), constrained_layout=True)
    seen = set()
    for r in results:
        if r.out_dataset != out_dataset or r.detector in seen or not r.in_scores:
            continue
        seen.add(r.detector)
        fpr, tpr = roc_points(r.in_scores, r.out_scores)
        ax.plot(fpr, tpr, label=f"{r.detector} ({r.auroc:.3f})")
        if len(seen) >= max_detectors:
            break
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
    ax.set_xlabel("false positive rate (out accepted)")
    ax.set_ylabel("true positive rate (in accepted)")
    ax.set_title(f"in vs {out_dataset}")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def denoising_strips(examples: dict[str, Tensor], n: int = 8) -> Figure:
    """One row per method (``clean``, ``noisy``, ...), ``n`` images per row.

    Args:
        examples: method → ``(N, C, H, W)`` images (grey or RGB, drawn in colour) or ``(N, D)``
            vectors (bar plots on shared y-limits).
        n: images per row (at most the fewest examples of a method).
    """
    names = list(examples)
    n = min(n, min(len(v) for v in examples.values()))
    fig, axes = plt.subplots(
        len(names), n, figsize=(1.1 * n, 1.15 * len(names)), squeeze=False, constrained_layout=True
    )
    first = np.asarray(examples[names[0]][0]) if n else np.zeros((1, 1))
    limits = None
    if not is_image(first):
        limits = shared_range(np.concatenate([np.asarray(v[:n]) for v in examples.values()]))
    for i, name in enumerate(names):
        for j in range(n):
            draw_sample(axes[i, j], examples[name][j], value_range=limits)
        axes[i, 0].set_ylabel(name, fontsize=8)
    return fig


def image_grid(
    images: Tensor,
    predicted: list[int] | None = None,
    probability: list[float] | None = None,
    ncols: int = 8,
    title: str | None = None,
) -> Figure:
    """A grid of points, each titled with its predicted label and probability.

    Args:
        images: ``(N, C, H, W)`` images (grey, or RGB drawn in colour), ``(N, H, W)`` grey
            images, or ``(N, D)`` vectors (bar plots on shared y-limits).
        predicted, probability: per point, for the titles.
        ncols: points per row. title: figure title.
    """
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.2 * ncols, 1.35 * nrows), squeeze=False, constrained_layout=True
    )
    limits = None if n == 0 or is_image(images[0]) else shared_range(images)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        draw_sample(ax, images[k], value_range=limits)
        if predicted is not None:
            text = f"{int(predicted[k])}"
            if probability is not None:
                text += f" ({float(probability[k]):.2f})"
            ax.set_title(text, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def ood_protocol_bars(table: list[dict], metric: str = "auroc") -> Figure:
    """One panel per training setting: ``metric`` (mean ± std over seeds) of every detector on
    every out set, as grouped bars.

    Args:
        table: rows of :func:`leafscope.experiments.ood_protocol.run_protocol`'s table (keys
            ``setting, detector, out_dataset, metric, metric_std``).
        metric: ``auroc``, ``fpr95``, ``aupr_in`` or ``aupr_out``.
    """
    settings = list(dict.fromkeys(r["setting"] for r in table))
    outs = list(dict.fromkeys(r["out_dataset"] for r in table))
    dets = list(dict.fromkeys(r["detector"] for r in table))
    fig, axes = plt.subplots(len(settings), 1, figsize=(11, 3.2 * len(settings)), squeeze=False)
    width = 0.8 / max(len(dets), 1)
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(dets), 2)))
    for ax, setting in zip(axes[:, 0], settings, strict=True):
        rows = {(r["detector"], r["out_dataset"]): r for r in table if r["setting"] == setting}
        for i, det in enumerate(dets):
            have = [(j, rows[(det, o)]) for j, o in enumerate(outs) if (det, o) in rows]
            ax.bar(
                [j + (i - len(dets) / 2 + 0.5) * width for j, _ in have],
                [r[metric] for _, r in have],
                width,
                yerr=[r[f"{metric}_std"] for _, r in have],
                color=colours[i],
                label=det,
                hatch="//" if det.startswith("leaf") else None,
            )
        ax.set_xticks(range(len(outs)), outs)
        ax.set_ylabel(metric.upper().replace("_", "-"))
        ax.set_title(f"{setting} models (mean ± std over seeds)")
        if metric != "fpr95":
            ax.set_ylim(0.4, 1.01)
    axes[0, 0].legend(ncol=6, fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
