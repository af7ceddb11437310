"""Figures of task result folders: a task writes the data of its figures under ``OUT/_files``
(the task layer draws no matplotlib figures); :func:`write_result_figures` draws them there as
PNG files.

Registered per task name in :data:`FIGURE_WRITERS`: ``nnk`` (MGM distributions, MGMs across
checkpoints, LOO vs test error), ``stability`` (edge overlap and MGM distances per layer) and
``invariance`` (polytope diameter of rotations per layer and model), ``attack`` (fooling
rate against the L2 budget per method), ``ood`` (ROC curves of every detector per out set,
under the first model) and ``transfer`` (histograms of log10 λ_1 and λ_{C-1} per data set).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leafscope.errors import InputError

__all__ = ["FIGURE_WRITERS", "write_result_figures"]

#: The folder of a result folder holding the task's files.
FILES_DIR = "_files"


def _read(folder: Path, name: str) -> Any:
    path = folder / FILES_DIR / name
    if not path.is_file():
        raise InputError(
            f"{folder} holds no {FILES_DIR}/{name}: the figures are drawn from a complete "
            "result folder (run the job with `out=DIR`, or merge its slices first: leafscope merge)"
        )
    return json.loads(path.read_text())


def _save(figures: dict[str, Any], folder: Path, dpi: int) -> list[Path]:
    from leafscope.report.save import save_figure

    out = []
    for name, figure in figures.items():
        path = folder / FILES_DIR / name
        save_figure(figure, path, dpi=dpi)
        out.append(path)
    return out


def _nnk(folder: Path, dpi: int) -> list[Path]:
    from leafscope.nnk.geometry import RunGeometry
    from leafscope.report.figures.nnk import (
        plot_loo_vs_test,
        plot_mgm_distributions,
        plot_mgm_epochs,
    )

    geometry = RunGeometry.from_json(_read(folder, "nnk.json"))
    figures = {
        "mgm_distributions.png": plot_mgm_distributions(geometry),
        "mgm_epochs.png": plot_mgm_epochs(geometry),
    }
    if geometry.loo_layer is not None:
        figures["loo_vs_test.png"] = plot_loo_vs_test(geometry)
    return _save(figures, folder, dpi)


def _stability(folder: Path, dpi: int) -> list[Path]:
    from leafscope.nnk.stability import LayerStability
    from leafscope.report.figures.nnk import plot_stability

    record = _read(folder, "stability.json")
    layers = {name: LayerStability.from_json(r) for name, r in record["layers"].items()}
    return _save({"stability.png": plot_stability(layers)}, folder, dpi)


def _invariance(folder: Path, dpi: int) -> list[Path]:
    from leafscope.nnk.invariance import AugmentationGeometry
    from leafscope.report.figures.nnk import plot_invariance

    record = _read(folder, "invariance.json")
    results = {
        label: {name: AugmentationGeometry.from_json(g) for name, g in layers.items()}
        for label, layers in record["results"].items()
    }
    return _save({"invariance.png": plot_invariance(results)}, folder, dpi)


def _attack(folder: Path, dpi: int) -> list[Path]:
    from leafscope.report.figures.attacks import fooling_rate_figure

    record = _read(folder, "fooling_rates.json")
    figure = fooling_rate_figure(record["rows"], title=f"{record['points']} points")
    return _save({"fooling_rate.png": figure}, folder, dpi)


def _safe_name(text: str) -> str:
    """A file-name part for a data set name or path (its last component, [A-Za-z0-9_-])."""
    import re

    stem = Path(str(text).rstrip("/")).name or "set"
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem)[:60]


def _ood(folder: Path, dpi: int) -> list[Path]:
    from types import SimpleNamespace

    from leafscope.report.figures.applications import roc_curves

    curves = [SimpleNamespace(**c) for c in _read(folder, "ood_scores.json")["curves"]]
    figures = {}
    for out_set in dict.fromkeys(c.out_dataset for c in curves):
        figures[f"roc_{_safe_name(out_set)}.png"] = roc_curves(curves, out_set)
    return _save(figures, folder, dpi)


def _transfer(folder: Path, dpi: int) -> list[Path]:
    from leafscope.report.figures.applications import spectra_histograms

    record = _read(folder, "spectra.json")
    return _save({"spectra.png": spectra_histograms(record["log10_eigenvalues"])}, folder, dpi)


#: Task name -> ``writer(result folder, dpi) -> [PNG paths]``.
FIGURE_WRITERS: dict[str, Callable[[Path, int], list[Path]]] = {
    "nnk": _nnk,
    "stability": _stability,
    "invariance": _invariance,
    "attack": _attack,
    "ood": _ood,
    "transfer": _transfer,
}


def write_result_figures(folder: str | Path, *, dpi: int = 110) -> list[Path]:
    """Draw the figures of a complete result folder into its ``_files`` (PNG).

    Args:
        folder: the ``out`` folder of a task run (its ``_summary.json`` names the task).
        dpi: resolution of the PNG files.

    Returns:
        The PNG paths written ([] for a task without figures here).

    Raises:
        InputError: not a complete result folder, or its figure data are missing.
    """
    folder = Path(folder)
    summary = folder / "_summary.json"
    if not summary.is_file():
        raise InputError(
            f"{folder} is not a complete result folder (no _summary.json): run the job with "
            "`out=DIR`, or merge its slices first (leafscope merge)"
        )
    task = json.loads(summary.read_text()).get("task")
    writer = FIGURE_WRITERS.get(str(task))
    return [] if writer is None else writer(folder, dpi)
