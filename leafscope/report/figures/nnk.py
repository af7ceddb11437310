"""Figures of the NNK analyses (matplotlib, Agg backend; every function returns a Figure):
MGMs and DeepNNK LOO across a run, stability across runs, rotation invariance."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from leafscope.errors import InputError  # noqa: E402
from leafscope.nnk.geometry import METRICS, EpochGeometry, RunGeometry  # noqa: E402
from leafscope.nnk.invariance import AugmentationGeometry  # noqa: E402
from leafscope.nnk.stability import LayerStability  # noqa: E402

__all__ = [
    "plot_invariance",
    "plot_loo_vs_test",
    "plot_mgm_distributions",
    "plot_mgm_epochs",
    "plot_stability",
]


def _measured(geometry: RunGeometry) -> list[str]:
    """The MGMs with values in at least one layer and epoch (orientation may be switched off)."""
    return [
        m
        for m in METRICS
        if any(layer.get(m) for e in geometry.epochs for layer in e.layers.values())
    ]


def _x_axis(geometry: RunGeometry) -> tuple[list[int], str]:
    """Epochs when they identify the checkpoints, else optimizer steps."""
    epochs = [e.epoch for e in geometry.epochs]
    if len(set(epochs)) == len(epochs):
        return epochs, "epoch"
    return [e.step for e in geometry.epochs], "step"


def plot_mgm_distributions(geometry: RunGeometry, epoch: int | None = None) -> Figure:
    """Histograms of the four MGMs, one line per layer, at one epoch (default: the last).

    Returns:
        A matplotlib Figure (Agg).
    """
    rec = geometry.epochs[-1] if epoch is None else _epoch(geometry, epoch)
    metrics = _measured(geometry)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for name in geometry.layers:
            s = rec.layers[name].get(metric)
            if not s:
                continue
            edges = np.asarray(s["hist"]["edges"])
            counts = np.asarray(s["hist"]["counts"], dtype=float)
            ax.stairs(counts / max(counts.sum(), 1), edges, label=name)
        ax.set_title(metric)
        ax.set_ylabel("fraction of nodes")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"NNK MGMs per layer, epoch {rec.epoch} (step {rec.step}, {geometry.n_points} points)"
    )
    fig.tight_layout()
    return fig


def plot_mgm_epochs(geometry: RunGeometry) -> Figure:
    """Mean ± std of each MGM against the epoch, one line per layer. Returns a Figure."""
    metrics = _measured(geometry)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    ep, xlabel = _x_axis(geometry)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for name in geometry.layers:
            ss = [e.layers[name].get(metric) for e in geometry.epochs]
            mean = np.array([s["mean"] if s else math.nan for s in ss])
            std = np.array([s["std"] if s else math.nan for s in ss])
            ax.errorbar(ep, mean, yerr=std, label=name, capsize=2, marker="o", ms=3)
        ax.set_title(metric)
        ax.set_xlabel(xlabel)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_loo_vs_test(geometry: RunGeometry) -> Figure:
    """DeepNNK LOO error and test error against the epoch (Pearson r in the title)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ep, xlabel = _x_axis(geometry)
    ax.plot(ep, geometry.loo_errors, "o-", label=f"NNK LOO ({geometry.loo_layer})")
    if any(t is not None for t in geometry.test_errors):
        test = [math.nan if t is None else t for t in geometry.test_errors]
        ax.plot(ep, test, "s-", label="test")
    r = geometry.pearson
    ax.set_title("LOO vs test error" + (f" (Pearson r = {r:.3f})" if r is not None else ""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("error")
    ax.legend()
    fig.tight_layout()
    return fig


def _epoch(geometry: RunGeometry, epoch: int) -> EpochGeometry:
    for e in geometry.epochs:
        if e.epoch == epoch:
            return e
    raise InputError(
        f"epoch {epoch} is not in the run geometry: measured epochs are "
        f"{[e.epoch for e in geometry.epochs]}"
    )


def plot_stability(result: dict[str, LayerStability]) -> Figure:
    """Edge Jaccard (NNK, kNN, chance) and MGM Wasserstein distances per layer.

    Returns:
        A matplotlib Figure (Agg).
    """
    names = list(result)
    summ = [result[n].summary() for n in names]
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    bars = (
        (-0.25, "nnk_jaccard", "NNK"),
        (0.0, "knn_jaccard", "kNN"),
        (0.25, "nnk_chance", "chance (NNK)"),
    )
    for off, key, label in bars:
        ax1.bar(x + off, [s[key] for s in summ], width=0.25, label=label)
    ax1.set_xticks(x, names)
    ax1.set_ylabel("edge Jaccard across runs")
    ax1.set_ylim(0, 1)
    ax1.legend(fontsize=8)
    for metric in ("n_neighbors", "diameter", "local_dim"):
        ax2.plot(x, [s.get(f"{metric}_wasserstein", np.nan) for s in summ], "o-", label=metric)
    ax2.set_xticks(x, names)
    ax2.set_ylabel("W1 between runs' MGM distributions")
    ax2.set_yscale("log")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_invariance(results: dict[str, dict[str, AugmentationGeometry]]) -> Figure:
    """Mean polytope diameter per layer, one line per model (e.g. with / without augmentation).

    Args:
        results: ``{model label: rotation_invariance(...) output}``.

    Returns:
        A matplotlib Figure (Agg).
    """
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, res in results.items():
        names = list(res)
        mean = [res[n].diameter.mean() for n in names]
        q1 = [np.quantile(res[n].diameter, 0.25) for n in names]
        q3 = [np.quantile(res[n].diameter, 0.75) for n in names]
        ax.plot(names, mean, "o-", label=label)
        ax.fill_between(names, q1, q3, alpha=0.2)
    ax.set_ylabel("NNK polytope diameter of rotations")
    ax.set_xlabel("layer")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("Rotation invariance (lower = more invariant)")
    fig.tight_layout()
    return fig
