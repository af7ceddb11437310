"""Figures of the core analyses: one function per figure, each returning a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from leafscope.information.spectrum import PointSpectra  # noqa: E402


def training_curve(history: Sequence[dict], steps: Sequence[dict] | None = None) -> Figure:
    """Loss and accuracy per epoch (train and validation) from ``FitResult.history``."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [h["epoch"] for h in history]
    for key, style in (("train", "-o"), ("val", "--s")):
        if all(h.get(f"{key}_loss") is not None for h in history):
            ax_loss.plot(epochs, [h[f"{key}_loss"] for h in history], style, label=key)
            ax_acc.plot(epochs, [100 * h[f"{key}_accuracy"] for h in history], style, label=key)
    if steps:
        ax_acc.plot(
            [s["epoch_fraction"] for s in steps],
            [100 * s["val_accuracy"] for s in steps],
            ":",
            color="gray",
            label="val (checkpoints)",
        )
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def spectra_comparison(spectra: dict[str, PointSpectra]) -> Figure:
    """Box plots of log10 eigenvalue i (i = 1..C−1) of G for several point sets, plus the
    distribution of log10 trace."""
    fig, (ax_ev, ax_tr) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    names = list(spectra)
    k = next(iter(spectra.values())).eigenvalues.shape[1]
    width = 0.8 / len(names)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, name in enumerate(names):
        logs = spectra[name].log10_eigenvalues().numpy()
        pos = np.arange(1, k + 1) + (j - (len(names) - 1) / 2) * width
        box = ax_ev.boxplot(
            [logs[:, i] for i in range(k)],
            positions=pos,
            widths=width * 0.9,
            patch_artist=True,
            showfliers=False,
            manage_ticks=False,
        )
        for patch in box["boxes"]:
            patch.set_facecolor(colors[j % len(colors)])
            patch.set_alpha(0.6)
        ax_ev.plot([], [], "s", color=colors[j % len(colors)], label=name)
        ax_tr.hist(
            spectra[name].log10_trace().numpy(),
            bins=30,
            alpha=0.6,
            label=name,
            color=colors[j % len(colors)],
        )
    ax_ev.set_xticks(np.arange(1, k + 1))
    ax_ev.set(
        xlabel="eigenvalue index i (descending)",
        ylabel="log10 λ_i of G",
        title="spectrum of the data information matrix",
    )
    ax_tr.set(xlabel="log10 tr G", ylabel="points", title="trace")
    for ax in (ax_ev, ax_tr):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def information_across_training(
    steps: Sequence[int], spectra: Sequence[PointSpectra], max_rank: int
) -> Figure:
    """Median log10 trace (with quartiles) and the distribution of numerical rank of G at the
    same points, for each checkpoint (x axis: optimizer steps)."""
    fig, (ax_tr, ax_rk) = plt.subplots(1, 2, figsize=(11, 3.8))
    logs = [s.log10_trace().numpy() for s in spectra]
    q1, med, q3 = (np.array([np.percentile(v, q) for v in logs]) for q in (25, 50, 75))
    ax_tr.fill_between(steps, q1, q3, alpha=0.3, label="quartiles")
    ax_tr.plot(steps, med, "-o", label="median")
    ax_tr.set(xlabel="optimizer step", ylabel="log10 tr G", title="trace of G during training")
    ax_tr.legend()
    ax_tr.grid(alpha=0.3)
    counts = np.array(
        [[(s.rank.numpy() == r).mean() for r in range(max_rank + 1)] for s in spectra]
    )
    bottom = np.zeros(len(steps))
    cmap = plt.get_cmap("viridis", max_rank + 1)
    for r in range(max_rank + 1):
        if counts[:, r].any():
            ax_rk.bar(range(len(steps)), counts[:, r], bottom=bottom, color=cmap(r), label=f"{r}")
            bottom += counts[:, r]
    ax_rk.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=45)
    ax_rk.set(xlabel="optimizer step", ylabel="fraction of points", title="numerical rank of G")
    ax_rk.legend(title="rank", fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def training_steps_curve(
    step_losses: Sequence[float],
    checkpoints: Sequence[dict],
    epoch_steps: Sequence[int] = (),
    smooth: int = 10,
) -> Figure:
    """Loss and accuracy against the optimizer step, so a one-epoch run is a curve, not a dot.

    Args:
        step_losses: training loss of each optimizer step (nats), step 1 first.
        checkpoints: per checkpoint ``step``, ``val_loss`` (nats) and ``val_accuracy`` ([0, 1]).
        epoch_steps: the step at which each epoch ended (dashed vertical lines).
        smooth: window (steps) of the moving average drawn over the per-step loss.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    losses = np.asarray(step_losses, dtype=float)
    xs = np.arange(1, len(losses) + 1)
    if len(losses):
        ax_loss.plot(xs, losses, color="tab:blue", alpha=0.3, lw=0.8, label="train (per step)")
        w = max(1, min(smooth, len(losses)))
        avg = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax_loss.plot(xs[w - 1 :], avg, color="tab:blue", label=f"train ({w}-step mean)")
    c_steps = [c["step"] for c in checkpoints]
    ax_loss.plot(c_steps, [c["val_loss"] for c in checkpoints], "s--", color="tab:orange",
                 label="val (checkpoints)")  # fmt: skip
    ax_acc.plot(c_steps, [100 * c["val_accuracy"] for c in checkpoints], "s--",
                color="tab:orange", label="val (checkpoints)")  # fmt: skip
    for ax in (ax_loss, ax_acc):
        for s in epoch_steps:
            ax.axvline(s, color="gray", ls=":", lw=0.8)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set(ylabel="cross-entropy (nats)", title="loss")
    ax_acc.set(ylabel="accuracy (%)", title="validation accuracy")
    fig.tight_layout()
    return fig
