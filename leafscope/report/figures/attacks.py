"""Figures of the adversarial attacks (matplotlib Agg; every function returns a Figure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["fooling_rate_figure"]


def fooling_rate_figure(rows: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """Fooling rate against the L2 budget, one line per method, with the spread over seeds.

    Args:
        rows: ``{method, budget, fooling_rate, std}`` records (``attack``'s summary rows).
        title: appended to the figure title.
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.8), constrained_layout=True)
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    for method in methods:
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["budget"])
        b = np.array([r["budget"] for r in mine], dtype=float)
        f = np.array([r["fooling_rate"] for r in mine], dtype=float)
        s = np.array([r.get("std", 0.0) for r in mine], dtype=float)
        ax.plot(b, f, marker="o", label=method.upper())
        if np.any(s > 0):
            ax.fill_between(b, f - s, f + s, alpha=0.2)
    ax.set_xlabel("L2 budget ε (pixels in [0, 1])")
    ax.set_ylabel("fooling rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Fooling rate against budget" + (f" ({title})" if title else ""))
    return fig
