"""Figures of the temperature experiments (matplotlib, Agg backend); each returns a Figure."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from leafscope.errors import InputError  # noqa: E402
from leafscope.thermo.monitor import TemperatureHistory  # noqa: E402


def temperature_over_training(history: TemperatureHistory, layer: str | None = None) -> Figure:
    """Temperature of each group of ``layer`` over training (trace if recorded, else epochs).

    Args:
        history: a monitor's :class:`TemperatureHistory`.
        layer: the layer to draw (default: the first one).
    """
    layer = layer or next(iter(history.layers))
    if layer not in history.layers:
        raise InputError(f"layer {layer!r} was not monitored: use one of {list(history.layers)}")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history.trace.get(layer):
        xs, rows, xlabel = history.trace_steps, history.trace[layer], "optimizer step"
    else:
        steps, xs = 0, []
        for n in history.steps_per_epoch:
            steps += n
            xs.append(steps)
        rows, xlabel = history.epoch_temperatures[layer], "optimizer step (end of epoch)"
    for g in range(history.n_groups[layer]):
        ax.plot(xs, [r[g] for r in rows], label=f"{history.layers[layer][:-1]} {g}", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("temperature T = K/d (per step²)")
    ax.set_title(f"{layer}: temperature per group ({history.optimizer.get('name', '?')})")
    if history.n_groups[layer] <= 16:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def pruning_table(result: Any) -> Figure:
    """Bar chart (mean ± std test accuracy) of a LeNet pruning result, published beside it."""
    rows = result.rows
    published = {p["condition"]: p for p in getattr(result, "published", [])}
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows)), 3.8))
    xs = range(len(rows))
    ax.bar(
        xs,
        [r.accuracy_mean for r in rows],
        yerr=[r.accuracy_std for r in rows],
        color="tab:blue",
        alpha=0.8,
        label="measured",
        capsize=2,
    )
    px = [i for i, r in enumerate(rows) if r.condition in published]
    if px:  # no legend entry for published values that are not there
        ax.scatter(
            px,
            [published[rows[i].condition]["accuracy_mean"] for i in px],
            color="tab:red",
            marker="D",
            zorder=3,
            label="published (theory §4)",
        )
    ax.set_xticks(list(xs), [r.condition for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pruning_curves(result: Any) -> Figure:
    """Metric vs pruning ratio for every criterion of a GNN result, published curve dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    criteria = list(dict.fromkeys(p.criterion for p in result.curves))
    for c in criteria:
        pts = sorted((p for p in result.curves if p.criterion == c), key=lambda p: p.ratio)
        ax.errorbar(
            [p.ratio for p in pts],
            [p.metric_mean for p in pts],
            yerr=[p.metric_std for p in pts],
            marker="o",
            ms=3,
            label=c,
            capsize=2,
        )
    pub = getattr(result, "published", {}) or {}
    for c in ("cold", "hot"):
        if c in pub:
            ax.plot(pub["ratio"], pub[c], ls="--", color="grey", lw=1)
            ax.annotate(f"published {c}", (pub["ratio"][-1], pub[c][-1]), fontsize=7)
    ax.set_xlabel("input features pruned (%)")
    ax.set_ylabel(f"test {result.metric} (%)")
    cfg = result.config
    ax.set_title(f"GCN {cfg.get('dataset')} ({cfg.get('task')}): input-feature pruning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_for(result: Any) -> Figure:
    """The main figure of a LeNet (table) or GNN (curves) result."""
    if hasattr(result, "curves"):
        return pruning_curves(result)
    if hasattr(result, "rows"):
        return pruning_table(result)
    raise InputError(f"no figure for {type(result).__name__}: pass a LeNet or GNN result")
