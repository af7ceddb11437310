"""The pieces of issue 14's fair OOD protocol, on tensors: training settings, the validation
blur, the fair leaf scores, one model's scoring, the held-out accuracies and the table.

- :data:`TRAINING` — the two model settings: ``converged`` (five full epochs, momentum 0.9, the
  LR divided by 10 after the third; the OOD literature's setting) and ``partial`` (100 steps
  with momentum 0.9: partially trained). :func:`train_run` trains (resumes, or reuses) one run.
- :func:`blurred` — the *validation* out set (Gaussian-blurred training images): the only place
  a leaf-based score may be tuned; never reported.
- :func:`score_protocol_model` — every baseline of the registry (:data:`PROTOCOL_BASELINES`) and
  the leaf scores of :data:`LEAF_SCORES` from one set of leaf paths, for one model.
- :func:`protocol_table` / :func:`markdown_table` — mean and std over seeds per setting.

The drivers are the ``ood-protocol`` task (:mod:`leafscope.tasks.ood`) and
:func:`leafscope.experiments.ood_protocol.run_protocol`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leafscope.applications.detectors import BASELINES, DETECTORS
from leafscope.errors import InputError

__all__ = [
    "LEAF_SCORES",
    "OUT_SETS",
    "PROTOCOL_BASELINES",
    "TRAINING",
    "WEIGHT_GRID",
    "accuracy_of",
    "blurred",
    "held_out_accuracy_of",
    "leaf_results",
    "markdown_table",
    "model_summary",
    "protocol_table",
    "regime_options",
    "score_protocol_model",
    "train_run",
    "tune_weight",
]

#: Training settings: keyword arguments of :func:`leafscope.training.fit` per setting.
TRAINING: dict[str, dict[str, Any]] = {
    "converged": {"epochs": 5, "lr": 0.05, "momentum": 0.9, "lr_step": 3, "lr_gamma": 0.1},
    "partial": {"epochs": 1, "lr": 0.05, "momentum": 0.9, "max_steps_per_epoch": 100},
}

#: Out sets of each in-distribution set: built-in names, plus ``rotated-90`` (the in set's
#: test images rotated by 90°).
OUT_SETS: dict[str, tuple[str, ...]] = {
    "mnist": ("fashion-mnist", "noise", "digits", "rotated-90", "kmnist", "emnist-letters"),
    "cifar10": ("svhn", "cifar100", "noise"),
}

#: Baselines of the protocol: every baseline of the registry, by name -> (detector class name,
#: the entry's fixed options) (recorded in the protocol's settings).
PROTOCOL_BASELINES: dict[str, tuple[str, dict]] = {
    name: (DETECTORS[name].cls.name, dict(DETECTORS[name].options)) for name in BASELINES
}
#: The registry detector whose paths give every leaf score.
LEAF_DETECTOR = "leaf-pixel"
#: Scores computed from one set of leaf paths (:meth:`LeafPixelDetector.components`):
#: w = 0 (the leaf distance), the detector's untuned w, and w tuned on the validation pair.
LEAF_SCORES = ("leaf-distance", LEAF_DETECTOR, f"{LEAF_DETECTOR}-tuned")
WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def regime_options(regime: str, max_steps_per_epoch: int | None = None) -> dict[str, Any]:
    """The :func:`leafscope.training.fit` options of a :data:`TRAINING` setting, with the
    epochs' steps capped at ``max_steps_per_epoch`` (slow machines)."""
    if regime not in TRAINING:
        raise InputError(f"unknown training setting {regime!r}: use one of {list(TRAINING)}")
    options = dict(TRAINING[regime])
    if max_steps_per_epoch is not None:
        options["max_steps_per_epoch"] = min(
            max_steps_per_epoch, options.get("max_steps_per_epoch") or max_steps_per_epoch
        )
    return options


def train_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    seed: int,
    run_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    val_fraction: float = 0.1,
    val_points: int | None = None,
    meta: Mapping[str, Any] | None = None,
    **fit_options: Any,
) -> tuple[Path, float | None, bool]:
    """Train ``model`` on a seeded 90/10 train/validation split of ``(x, y)`` into ``run_dir``,
    or reuse the run there: a finished run is restored (its settings checked), an interrupted
    one continues from its newest checkpoint.

    Args:
        model: the untrained model (built with ``torch.manual_seed(seed)`` by the caller).
        x, y: training inputs (N, ...) and labels (N,).
        seed: the split's and training's seed.
        run_dir: the run's folder.
        val_points: validation points evaluated after each epoch (None: the whole split).
        meta: recorded in the run (e.g. the data set's name).
        **fit_options: :class:`leafscope.training.FitConfig` fields (``epochs`` required).

    Returns:
        ``(final checkpoint, last validation accuracy, reused)``.
    """
    from leafscope.data import train_val_split
    from leafscope.training import fit

    run_dir = Path(run_dir)
    final = run_dir / f"epoch_{int(fit_options['epochs']):04d}.pt"
    reused = final.exists()
    tr, va = train_val_split(len(x), val_fraction, seed)
    va = va if val_points is None else va[:val_points]
    result = fit(
        model,
        (x[tr], y[tr]),
        (x[va], y[va]),
        seed=seed,
        device=device,
        out_dir=run_dir,
        resume=True,
        progress=False,
        meta=dict(meta or {}),
        **fit_options,
    )
    return final, result.history[-1]["val_accuracy"], reused


def model_summary(checkpoint: str | os.PathLike) -> dict:
    """The training record of a :func:`train_run` checkpoint, from its run's metrics.json.

    Returns:
        ``checkpoint``, and when metrics.json is present: ``val_accuracy`` (last epoch, in
        [0, 1]), ``val_accuracy_per_epoch``, ``epochs``, ``steps``, ``train_seconds`` (sum of
        the epochs' wall times) and the optimiser ``settings``.
    """
    path = Path(checkpoint)
    summary: dict[str, Any] = {"checkpoint": str(path)}
    metrics = path.parent / "metrics.json"
    if not metrics.exists():
        return summary
    record = json.loads(metrics.read_text())
    history = record.get("history", [])
    keys = ("epochs", "lr", "momentum", "lr_step", "lr_gamma", "batch_size", "max_steps_per_epoch")
    summary.update(
        val_accuracy=history[-1]["val_accuracy"] if history else None,
        val_accuracy_per_epoch=[h["val_accuracy"] for h in history],
        epochs=len(history),
        steps=record.get("steps"),
        train_seconds=float(sum(h.get("seconds") or 0.0 for h in history)),
        settings={k: record.get("settings", {}).get(k) for k in keys},
    )
    return summary


def run_seed(checkpoint: str | os.PathLike) -> int:
    """The training seed of a run's checkpoint (its metrics.json; 0 without one)."""
    metrics = Path(checkpoint).parent / "metrics.json"
    return int(json.loads(metrics.read_text())["settings"]["seed"]) if metrics.exists() else 0


def accuracy_of(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` (batches on the model's device)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.no_grad():
        pred = [
            model(x[i : i + batch_size].to(device)).argmax(1).cpu()
            for i in range(0, len(x), batch_size)
        ]
    return float((torch.cat(pred) == y).double().mean())


def held_out_accuracy_of(
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    seed: int,
    *,
    val_fraction: float = 0.1,
    batch_size: int = 1000,
) -> dict:
    """Accuracy on a run's whole validation split (the ``val_fraction`` of the training set held
    out with the run's ``seed``) and on the whole test set — the precise plateau check that the
    run's per-epoch ``val_accuracy`` (on a part of that split) is not.

    Returns:
        ``val_accuracy_full, val_points_full, test_accuracy, test_points`` (accuracies in [0, 1]).
    """
    from leafscope.data import train_val_split

    model = model.eval()
    _, va = train_val_split(len(train[0]), val_fraction, seed)
    return {
        "val_accuracy_full": accuracy_of(model, train[0][va], train[1][va], batch_size),
        "val_points_full": len(va),
        "test_accuracy": accuracy_of(model, test[0], test[1], batch_size),
        "test_points": len(test[0]),
    }


def blurred(images: Tensor, sigma: float = 2.0) -> Tensor:
    """Gaussian blur (N, C, H, W) images with standard deviation ``sigma`` pixels (kernel
    radius 3σ, zero padding, the kernel normalised to sum 1) — the validation out set."""
    if not sigma > 0:
        raise InputError(f"sigma must be > 0 (got {sigma})")
    r = max(int(np.ceil(3 * sigma)), 1)
    t = torch.arange(-r, r + 1, dtype=images.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = images.shape[1]
    x = F.conv2d(images, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, r), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(r, 0), groups=c)


def tune_weight(
    det, val_in: Tensor, val_out: Tensor, progress: bool = False
) -> tuple[float, float]:
    """The blend weight with the best AUROC on the validation pair (ties: the smallest)."""
    from leafscope.applications.metrics import auroc

    c_in = det.components(val_in, progress=progress)
    c_out = det.components(val_out, progress=progress)
    scores = [auroc(det.combine(*c_in, w), det.combine(*c_out, w)) for w in WEIGHT_GRID]
    best = int(np.argmax(scores))
    return float(WEIGHT_GRID[best]), float(scores[best])


def leaf_results(
    det, x_in: Tensor, outs: Mapping[str, Tensor], weight: float, seed, progress: bool = False
) -> list:
    """The :data:`LEAF_SCORES` results of a fitted leaf-pixel detector (one set of paths per
    input, three weights)."""
    from leafscope.applications.ood import score_result

    comp_in = det.components(x_in, progress=progress)
    comp_out = {name: det.components(x, progress=progress) for name, x in outs.items()}
    results = []
    for name, w in zip(LEAF_SCORES, (0.0, det.weight, weight), strict=True):
        s_in = det.combine(*comp_in, w)
        for out_name, c in comp_out.items():
            results.append(score_result(name, out_name, s_in, det.combine(*c, w), seed, False))
    return results


def score_protocol_model(
    model: nn.Module,
    fit: tuple[Tensor, Tensor | None],
    validation: tuple[Tensor, Tensor],
    x_in: Tensor,
    outs: Mapping[str, Tensor],
    *,
    leaf_steps: int,
    leaf_scale_points: int,
    random_state: int = 0,
    seed: int | None = None,
    progress: bool = False,
) -> tuple[list, float, float]:
    """Fit and score every protocol baseline and leaf score of one model.

    Args:
        model: the classifier.
        fit: in-distribution training inputs (N, ...) and labels (or None).
        validation: ``(val_in, val_out)``: held-out training inputs and their blurred copies,
            the only pair the blend weight is tuned on.
        x_in: in-distribution test inputs; outs: out-set name -> inputs.
        leaf_steps, leaf_scale_points: path steps and the held-out points of the scale medians.
        random_state: the detectors' seed; seed: recorded with the results (the model's).
        progress: progress bars for the slow detectors and the leaf paths.

    Returns:
        ``(results, weight, val_auroc)``: the ``OODResult`` list (baselines, then the leaf
        scores) and the tuned weight with its validation AUROC.
    """
    from leafscope.applications.ood import evaluate_detectors, fit_detectors

    fit_x, fit_y = fit
    dets = {name: DETECTORS[name].build(model, random_state=random_state)
            for name in PROTOCOL_BASELINES}  # fmt: skip
    fit_detectors(dets, fit_x, fit_y, progress=progress)
    runs = evaluate_detectors(
        dets, x_in, dict(outs), seed=seed, keep_scores=False, progress=progress
    )
    settings = {"leaf_steps": leaf_steps, "leaf_scale_points": leaf_scale_points}
    leaf = DETECTORS[LEAF_DETECTOR].build(model, settings, random_state=random_state)
    leaf.fit(fit_x, fit_y, progress=progress)
    weight, val_auroc = tune_weight(leaf, *validation, progress=progress)
    runs += leaf_results(leaf, x_in, outs, weight, seed, progress=progress)
    return runs, weight, val_auroc


def protocol_table(per_model: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Mean and std over seeds per (setting, detector, out set) of result dicts carrying
    ``setting`` (``aggregate_seeds`` rows with ``setting``, settings in first-seen order)."""
    from leafscope.applications.ood import OODResult, aggregate_seeds

    fields = set(OODResult.__dataclass_fields__)
    table: list[dict] = []
    for setting in dict.fromkeys(r["setting"] for r in per_model):
        runs = [
            OODResult(**{k: v for k, v in r.items() if k in fields})
            for r in per_model
            if r["setting"] == setting
        ]
        table += [{"setting": setting, **row} for row in aggregate_seeds(runs)]
    return table


def markdown_table(table: list[dict]) -> str:
    """The protocol's table as Markdown: one row per (setting, detector, out set), each metric
    as ``mean ± std``; the best AUROC of each (setting, out set) in bold."""
    from leafscope.applications.ood import METRICS

    best: dict[tuple[str, str], float] = {}
    for r in table:
        key = (r["setting"], r["out_dataset"])
        best[key] = max(best.get(key, -1.0), r["auroc"])
    lines = [
        "| setting | out set | detector | AUROC | FPR95 | AUPR-in | AUPR-out |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(table, key=lambda r: (r["setting"], r["out_dataset"])):
        cells = [f"{r[m]:.3f} ± {r[m + '_std']:.3f}" for m in METRICS]
        if r["auroc"] == best[(r["setting"], r["out_dataset"])]:
            cells[0] = f"**{cells[0]}**"
        lines.append(
            f"| {r['setting']} | {r['out_dataset']} | {r['detector']} | {' | '.join(cells)} |"
        )
    return "\n".join(lines)
