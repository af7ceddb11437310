"""Figures of the applications (matplotlib Agg; every function returns a Figure, saves nothing)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from leafscope.applications.metrics import roc_points  # noqa: E402

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
    """One row per method (``clean``, ``noisy``, ...), ``n`` images per row."""
    names = list(examples)
    n = min(n, min(len(v) for v in examples.values()))
    fig, axes = plt.subplots(
        len(names), n, figsize=(1.1 * n, 1.15 * len(names)), squeeze=False, constrained_layout=True
    )
    for i, name in enumerate(names):
        for j in range(n):
            ax = axes[i, j]
            img = np.asarray(examples[name][j])
            if img.ndim == 3 and img.shape[0] == 3:  # RGB (3, H, W): drawn in colour
                ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1))
            else:
                side = int(round(np.sqrt(img.size)))
                ax.imshow(img.reshape(side, side), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(name, fontsize=8)
    return fig


def image_grid(
    images: Tensor,
    predicted: list[int] | None = None,
    probability: list[float] | None = None,
    ncols: int = 8,
    title: str | None = None,
) -> Figure:
    """A grid of grey images, each titled with its predicted label and probability."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.2 * ncols, 1.35 * nrows), squeeze=False, constrained_layout=True
    )
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        side = int(round(np.sqrt(np.asarray(images[k]).size)))
        ax.imshow(np.asarray(images[k]).reshape(side, side), cmap="gray", vmin=0, vmax=1)
        if predicted is not None:
            text = f"{int(predicted[k])}"
            if probability is not None:
                text += f" ({float(probability[k]):.2f})"
            ax.set_title(text, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
