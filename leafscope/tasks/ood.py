"""``ood`` and ``ood-protocol``: out-of-distribution detectors, one unit per model.

``ood``: every detector of the registry (:data:`leafscope.applications.detectors.DETECTORS`)
or a chosen few, fitted on a seeded sample of the in-distribution set's ``train`` split and
scored on a sample of its ``test`` split against each out set. The models are the main model,
then each of ``checkpoints`` (with the main model's options), or ``seeds`` models trained first
on the ``train`` split. A set without a train/test split of its own is refused unless a
holdout fraction makes a seeded one (the data layer's rule), so a detector is never scored on
the points it was fitted on. Rows: one per (model, detector, out set) with AUROC, FPR at 95%
TPR, AUPR-in and AUPR-out (in = positive) and the raw scores; summary: mean and population std
over the models.

``ood-protocol``: issue 14's fair protocol (:mod:`leafscope.applications.ood_protocol`): models
trained per (training setting, seed), every baseline of the registry and the leaf scores from
one set of leaf paths (the blend weight tuned only on blurred training images); the table
per setting.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.errors import InputError
from leafscope.tasks.base import (
    Context,
    Params,
    Task,
    param,
    register_task,
    split_roles,
    take_sample,
)

__all__ = [
    "OodParams",
    "OodProtocolParams",
    "OodProtocolTask",
    "OodTask",
    "ood_specs",
]

SPECTRUM_METHODS = ("mahalanobis", "knn")
METRIC_COLUMNS = ("auroc", "fpr95", "aupr_in", "aupr_out")


def _progress(context: Context) -> bool:
    """Progress bars of the slow detectors: the run's choice."""
    return bool(context.progress)


def _has_model(context: Context, role: str) -> bool:
    return context.has_model(role)


def _fit_and_in(data: Any, task: str) -> dict[str, Any]:
    """The ``fit`` (train) and ``in`` (test) roles of the in-distribution set."""
    purpose = f"{task} fits its detectors on the train split and scores the test split"
    return split_roles(data, purpose, **{"fit": "train", "in": "test"})


def ood_specs(main: Any, names: Sequence[str]) -> dict[str, Any]:
    """The out sets' :class:`~leafscope.data.DataSpec` by role ``ood1, ood2, ...``: the main
    spec's options with another name; the ``test`` split of a set that has one, else the set
    whole (an out set is never fitted on, so it needs no split of its own). Generated ``noise``
    takes the main set's shape in the runner."""
    specs = {}
    for i, name in enumerate(names, start=1):
        spec = main.replace(name=name, holdout=None, input_shape=None)
        specs[f"ood{i}"] = spec.replace(split="test" if spec.has_split() else "all")
    return specs


def _check_shapes(context: Context, roles: Mapping[str, str], like: str) -> None:
    """Every set of ``roles`` (role -> name) has the point shape of the set ``like``."""
    want = tuple(context.data(like).input_shape)
    for role, name in roles.items():
        got = tuple(context.data(role).input_shape)
        if got != want:
            raise InputError(
                f"out set {name} has points of shape {got} but the in-distribution set has "
                f"{want}: the sets are compared at one shape (convert them with the data "
                "options grey / resize, or choose sets of one kind)"
            )


def _result_rows(results: Sequence[Any], unit: int, **columns: Any) -> dict[str, list]:
    rows: dict[str, list] = {"unit": [], "detector": [], "out_dataset": []}
    rows.update({m: [] for m in METRIC_COLUMNS})
    rows.update({k: [] for k in columns})
    for r in results:
        rows["unit"].append(unit)
        rows["detector"].append(r.detector)
        rows["out_dataset"].append(r.out_dataset)
        for m in METRIC_COLUMNS:
            rows[m].append(float(getattr(r, m)))
        for k, v in columns.items():
            rows[k].append(v(r) if callable(v) else v)
    return rows


def _to_arrays(parts: Sequence[Mapping[str, list]], columns: Sequence[str]) -> dict:
    out = {}
    for c in columns:
        values = [v for part in parts for v in part[c]]
        if c == "unit" or c in ("seed", "in_points", "out_points"):
            out[c] = np.asarray(values, dtype=np.int64)
        elif c in METRIC_COLUMNS or c in ("tuned_weight", "val_auroc"):
            out[c] = np.asarray(values, dtype=np.float64)
        else:
            out[c] = np.asarray([str(v) for v in values])
    return out


def _results_of(rows: Mapping[str, np.ndarray], extra: Sequence[str] = ()) -> list[dict]:
    """The rows as OODResult-like dicts (without the raw scores)."""
    out = []
    for i in range(len(rows["unit"])):
        record = {
            "detector": str(rows["detector"][i]),
            "out_dataset": str(rows["out_dataset"][i]),
            **{m: float(rows[m][i]) for m in METRIC_COLUMNS},
            "seed": int(rows["seed"][i]),
        }
        for k in extra:
            value = rows[k][i]
            record[k] = value.item() if hasattr(value, "item") else str(value)
        out.append(record)
    return out


def _metrics_table_lines(table: Sequence[Mapping[str, Any]]) -> list[str]:
    from leafscope.applications.ood import METRICS

    lines = [
        "| detector | out set | AUROC | FPR@95TPR | AUPR-in | AUPR-out |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        cells = " | ".join(f"{r[m]:.4f} ± {r[m + '_std']:.4f}" for m in METRICS)
        lines.append(f"| {r['detector']} | {r['out_dataset']} | {cells} |")
    return lines


# --- ood -------------------------------------------------------------------------------------


def _model_spec_for(main: Any, path: str) -> Any:
    """A further model: ``path`` with the main model's options (the weights of a factory)."""
    from leafscope.models.spec import ModelSpec

    if main is None:
        return ModelSpec(checkpoint=path)
    if main.factory is not None:
        return dataclasses.replace(main, weights=path)
    return dataclasses.replace(main, checkpoint=path)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OodParams(Params):
    """Parameters of :class:`OodTask`.

    Attributes:
        ood: the out-of-distribution sets (built-in names or paths): the test split of each, or
            the whole set when it has no split of its own.
        detectors: registry names (None: every detector).
        points: test points of the in set and of each out set (a seeded sample stratified by
            label; fewer when a set is smaller).
        fit_points: training points of the in set the detectors are fitted on.
        checkpoints: further models after the main one: checkpoint files (with a factory
            main model: its weights files), each with the main model's options.
        seeds: train this many models (seeds 0..N-1) on the in set's train split first.
        arch: the architecture ``seeds`` trains (a :func:`leafscope.models.build_model` name).
        train_epochs: epochs per trained seed (SGD, lr 0.01, batch 64, a seeded 10% held out).
        runs_dir: where ``seeds`` trains (``{arch}-s{seed}`` runs; finished runs are reused).
        knn_k: k of the kNN detector and of dim-spectrum's kNN density.
        spectrum_method: density of dim-spectrum on the log-eigenvalue vectors.
        leaf_steps: path steps of the leaf detectors; leaf_anchors: paths per input.
        seed: seed of the point samples and of the detectors' random choices.
    """

    ood: tuple[str, ...] = param(
        ("fashion-mnist", "noise"),
        help="out-of-distribution sets, comma-separated: names or paths (their test split; a "
        "set without one: all of it)",
        metavar="SET,SET",
    )
    detectors: tuple[str, ...] | None = param(
        None, help="detectors, comma-separated, or all (default: all)", metavar="NAME,NAME|all"
    )
    points: int = param(1000, help="test points of the in set and of each out set", metavar="N")
    fit_points: int = param(
        5000, help="training points of the in set to fit the detectors", metavar="N"
    )
    checkpoints: tuple[str, ...] | None = param(
        None,
        help="further models after --checkpoint/--model: comma-separated checkpoint files (with "
        "--model: weights files), each with the model options",
        metavar="FILE,FILE",
    )
    seeds: int | None = param(
        None, help="train N models (seeds 0..N-1) on the in set's train split first", metavar="N"
    )
    arch: str = param(
        "lenet", help="architecture that --seeds trains (lenet, cnn, mlp, ...)", metavar="NAME"
    )
    train_epochs: int = param(2, help="epochs per trained seed", metavar="N")
    runs_dir: str = param(
        "runs/ood", help="where --seeds trains (finished runs are reused)", metavar="DIR"
    )
    knn_k: int = param(
        50, help="k of the knn detector (and of dim-spectrum's knn density)", metavar="K"
    )
    spectrum_method: str = param(
        "mahalanobis", help="density of dim-spectrum on log-eigenvalue vectors",
        choices=SPECTRUM_METHODS,
    )  # fmt: skip
    leaf_steps: int = param(20, help="path steps of the leaf detectors", metavar="N")
    leaf_anchors: int = param(1, help="paths per input of the leaf detectors", metavar="N")
    seed: int = param(
        0, help="seed of the point samples and the detectors' random choices", metavar="SEED"
    )

    def validate(self) -> None:
        from leafscope.applications.detectors import DETECTORS

        if not self.ood:
            raise InputError("ood needs at least one out-of-distribution set, e.g. noise")
        repeated = sorted({n for n in self.ood if self.ood.count(n) > 1})
        if repeated:
            raise InputError(f"ood lists {', '.join(repeated)} more than once")
        if self.detectors is not None:
            unknown = [n for n in self.detectors if n not in DETECTORS]
            if unknown or not self.detectors:
                raise InputError(
                    f"detectors: unknown {unknown or '(none given)'}: use some of "
                    f"{', '.join(DETECTORS)} or all"
                )
        for name in ("points", "fit_points"):
            if getattr(self, name) < 2:
                raise InputError(f"{name} must be >= 2 (got {getattr(self, name)})")
        for name in ("train_epochs", "knn_k", "leaf_steps", "leaf_anchors"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.seeds is not None and self.seeds < 1:
            raise InputError(f"seeds must be >= 1 (got {self.seeds})")
        if self.seeds is not None and self.checkpoints:
            raise InputError("seeds trains its own models: give no checkpoints with it")
        if self.checkpoints is not None and not self.checkpoints:
            raise InputError("checkpoints needs at least one file")
        if self.spectrum_method not in SPECTRUM_METHODS:
            raise InputError(
                f"spectrum_method must be one of {', '.join(SPECTRUM_METHODS)} "
                f"(got {self.spectrum_method!r})"
            )

    @property
    def detector_names(self) -> tuple[str, ...]:
        from leafscope.applications.detectors import DETECTORS

        return tuple(DETECTORS) if self.detectors is None else tuple(self.detectors)

    def detector_settings(self) -> dict[str, Any]:
        """The shared settings the registry's entries read."""
        return {
            "knn_k": self.knn_k,
            "spectrum_method": self.spectrum_method,
            "leaf_steps": self.leaf_steps,
            "leaf_anchors": self.leaf_anchors,
        }

    def seed_run(self, seed: int) -> Path:
        """The run folder of trained seed ``seed``."""
        return Path(self.runs_dir).expanduser().resolve() / f"{self.arch}-s{seed}"

    def seed_checkpoint(self, seed: int) -> Path:
        return self.seed_run(seed) / f"epoch_{self.train_epochs:04d}.pt"


@register_task
class OodTask(Task):
    """Every detector on every in/out pair, one unit per model."""

    name = "ood"
    Params = OodParams
    data_flag = "--in"
    default_split = "test"
    summary = "out-of-distribution detection: DIM and leaf detectors against standard baselines"
    description = (
        "Fits every detector (or --detectors) on a seeded sample of the in-distribution set's "
        "train split and reports AUROC, FPR at 95% TPR, AUPR-in and AUPR-out (in = positive) on "
        "a sample of its test split against each --ood set. A set without a train/test split "
        "needs --holdout F (a seeded split), so no detector is scored on its own fit points. "
        "Models: --checkpoint/--model, then each of --checkpoints; or --seeds N trained first. "
        "Rows: one per (model, detector, out set) with the raw scores; the summary gives mean "
        "and std over the models."
    )
    columns = (
        "unit",
        "model",
        "seed",
        "detector",
        "out_dataset",
        *METRIC_COLUMNS,
        "in_points",
        "out_points",
        "scores",
    )
    per_point = False

    def extra_models(self, model: Any) -> dict[str, Any]:
        from leafscope.models.spec import ModelSpec

        p: OodParams = self.params
        if p.seeds is not None:
            if model is not None:
                raise InputError(
                    "seeds trains its own models: give no model (checkpoint or factory) with it"
                )
            return {
                f"seed{s}": ModelSpec(checkpoint=str(p.seed_checkpoint(s))) for s in range(p.seeds)
            }
        return {
            f"checkpoint{i}": _model_spec_for(model, path)
            for i, path in enumerate(p.checkpoints or (), start=1)
        }

    def extra_data(self, data: Any) -> dict[str, Any]:
        outs = ood_specs(data, self.params.ood)
        here = data.absolute().name
        for spec in outs.values():
            if spec.split == "all" and spec.absolute().name == here:
                raise InputError(
                    f"ood lists the in-distribution set {spec.name}, which has no split of its "
                    "own: all of it would include the points the detectors are fitted on"
                )
        return {**_fit_and_in(data, "ood"), **outs}

    def units(self, context: Context) -> list[Any]:
        p: OodParams = self.params
        if p.seeds is not None:
            return [{"model": f"seed{s}", "seed": s} for s in range(p.seeds)]
        units: list[dict] = []
        if _has_model(context, "model"):
            units.append({"model": "model"})
        for i, path in enumerate(p.checkpoints or (), start=1):
            units.append({"model": f"checkpoint{i}", "checkpoint": path})
        return units

    def prepare(self, context: Context) -> dict[str, Any]:
        p: OodParams = self.params
        ood_roles = {f"ood{i}": n for i, n in enumerate(p.ood, start=1)}
        _check_shapes(context, ood_roles, "in")
        if p.seeds is not None:
            self._train_seeds(context)
        fit_set = context.data("fit")
        sizes = {
            "fit_points": min(p.fit_points, len(fit_set)),
            "points": {"in": min(p.points, len(context.data("in")))},
        }
        for role, name in ood_roles.items():
            sizes["points"][name] = min(p.points, len(context.data(role)))
        return sizes

    def _train_seeds(self, context: Context) -> None:
        from leafscope.applications.ood_protocol import train_run
        from leafscope.models import build_model_for_input

        p: OodParams = self.params
        fit_set = context.data("fit")
        x, y = fit_set.take(range(len(fit_set)))
        if bool((y < 0).any()):
            raise InputError(
                f"seeds trains on labelled data, but {fit_set.name} has unlabelled points"
            )
        for s in range(p.seeds):
            torch.manual_seed(s)
            model = build_model_for_input(p.arch, tuple(fit_set.input_shape), fit_set.num_classes)
            train_run(
                model, x, y, s, p.seed_run(s), device=context.device,
                meta={"data": fit_set.name, "arch": p.arch},
                epochs=p.train_epochs, optimizer="sgd", lr=0.01, momentum=0.0, batch_size=64,
            )  # fmt: skip

    def _data(self, context: Context) -> tuple:
        """``(fit x, fit y or None, in x, {out name: x})``: the seeded samples."""
        p: OodParams = self.params
        fit_set, in_set = context.data("fit"), context.data("in")
        x_fit, y_fit = take_sample(fit_set, p.fit_points, p.seed)
        x_in, _ = take_sample(in_set, p.points, p.seed)
        outs = {}
        for i, name in enumerate(p.ood, start=1):
            out_set = context.data(f"ood{i}")
            outs[name] = take_sample(out_set, p.points, p.seed)[0]
        return x_fit, (y_fit if bool((y_fit >= 0).all()) else None), x_in, outs

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.applications.detectors import build_detectors
        from leafscope.applications.ood import evaluate_detectors, fit_detectors
        from leafscope.data import check_model_input

        p: OodParams = self.params
        x_fit, y_fit, x_in, outs = self._data(context)
        parts = []
        for pos in positions:
            unit = context.units[pos]
            model = context.model(unit["model"])
            for name, x in {"the in-distribution set": x_in, **outs}.items():
                check_model_input(model, x[:1], source=f"the data ({name})")
            detectors = build_detectors(
                p.detector_names, model, p.detector_settings(), random_state=p.seed
            )
            fit_detectors(detectors, x_fit, y_fit, progress=_progress(context))
            results = evaluate_detectors(
                detectors, x_in, outs, seed=int(pos), progress=_progress(context)
            )
            parts.append(
                _result_rows(
                    results,
                    int(pos),
                    model=unit["model"],
                    seed=int(pos),
                    in_points=len(x_in),
                    out_points=lambda r: len(outs[r.out_dataset]),
                    scores=lambda r: json.dumps({"in": r.in_scores, "out": r.out_scores}),
                )
            )
        return _to_arrays(parts, self.columns)

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        from leafscope.applications.ood import OODResult, aggregate_seeds

        per_model = _results_of(rows, extra=("model",))
        fields = set(OODResult.__dataclass_fields__)
        table = aggregate_seeds([OODResult(**{k: v for k, v in r.items() if k in fields})
                                 for r in per_model])  # fmt: skip
        p: OodParams = self.params
        return {
            "results": table,
            "per_model": per_model,
            "models": [dict(u) for u in context.units],
            "in_points": int(rows["in_points"][0]) if len(rows["unit"]) else 0,
            "detector_settings": p.detector_settings(),
            "random_state": p.seed,
            "std": "population std over models (ddof=0)",
        }

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        """``ood_scores.json``: the raw in / out scores of every detector and out set under the
        first model (what the ROC figures draw: :func:`leafscope.report.results.
        write_result_figures`)."""
        from leafscope.io import write_json

        units = np.asarray(rows["unit"], dtype=np.int64)
        first = int(units.min()) if len(units) else 0
        curves = []
        for i in np.flatnonzero(units == first):
            scores = json.loads(str(rows["scores"][i]))
            curves.append(
                {
                    "model": str(rows["model"][i]),
                    "detector": str(rows["detector"][i]),
                    "out_dataset": str(rows["out_dataset"][i]),
                    "auroc": float(rows["auroc"][i]),
                    "in_scores": scores["in"],
                    "out_scores": scores["out"],
                }
            )
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return [write_json(folder / "ood_scores.json", {"curves": curves})]

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = [
            f"model {r['seed']} {r['detector']:>14} vs {r['out_dataset']}: AUROC {r['auroc']:.4f} "
            f"FPR95 {r['fpr95']:.4f} AUPR-in {r['aupr_in']:.4f} AUPR-out {r['aupr_out']:.4f}"
            for r in summary["per_model"]
        ]
        return lines + _metrics_table_lines(summary["results"])


# --- ood-protocol ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class OodProtocolParams(Params):
    """Parameters of :class:`OodProtocolTask`.

    Attributes:
        seeds: models per training setting (seeds 0..N-1).
        regimes: training settings, keys of :data:`~leafscope.applications.ood_protocol.TRAINING`.
        arch: the trained architecture.
        runs_dir: where the models are trained (``{arch}-{regime}-s{seed}`` runs; finished runs
            are reused, interrupted ones resumed).
        max_steps_per_epoch: cap the training epochs (slow machines).
        ood: out sets (built-in names or paths; ``rotated-D``: the in set's test points rotated
            by D degrees).
        points: in-distribution test points and points of each out set (the first ones), and
            the size of the validation pair.
        fit_points: the first training points, the detectors' fit set; the validation pair is
            the next ``2 points`` training points (the second half blurred).
        leaf_steps, leaf_scale_points: path steps of the leaf scores and the held-out training
            points of their scale medians.
        blur_sigma: the validation out set's Gaussian blur, in pixels.
        seed: the detectors' random choices.
    """

    seeds: int = param(3, help="models per training setting (seeds 0..N-1)", metavar="N")
    regimes: tuple[str, ...] = param(
        ("converged", "partial"),
        help="training settings, comma-separated (converged, partial)",
        metavar="NAME,NAME",
    )
    arch: str = param("lenet", help="the trained architecture", metavar="NAME")
    runs_dir: str = param(
        "runs/ood-protocol",
        help="where the models are trained (finished runs are reused)",
        metavar="DIR",
    )
    max_steps_per_epoch: int | None = param(
        None, help="cap the training epochs (slow machines)", metavar="N"
    )
    ood: tuple[str, ...] = param(
        ("fashion-mnist", "noise", "digits", "rotated-90"),
        help="out sets, comma-separated: names, paths, rotated-D (the in test points rotated)",
        metavar="SET,SET",
    )
    points: int = param(
        500, help="in test points, points per out set and per validation set", metavar="N"
    )
    fit_points: int = param(2000, help="training points the detectors are fitted on", metavar="N")
    leaf_steps: int = param(10, help="path steps of the leaf scores", metavar="N")
    leaf_scale_points: int = param(
        200, help="held-out training points for the leaf medians", metavar="N"
    )
    blur_sigma: float = param(
        2.0, help="Gaussian blur of the validation out set, in pixels", metavar="PIXELS"
    )
    seed: int = param(0, help="seed of the detectors' random choices", metavar="SEED")

    def validate(self) -> None:
        from leafscope.applications.ood_protocol import TRAINING

        if self.seeds < 1:
            raise InputError(f"seeds must be >= 1 (got {self.seeds})")
        unknown = [r for r in self.regimes if r not in TRAINING]
        if unknown or not self.regimes:
            raise InputError(
                f"regimes: unknown {unknown or '(none given)'}: use some of {', '.join(TRAINING)}"
            )
        if self.points < 2 or self.fit_points < 2:
            raise InputError(
                f"points and fit_points must be >= 2 (got {self.points}, {self.fit_points})"
            )
        for name in ("leaf_steps", "leaf_scale_points"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise InputError(f"max_steps_per_epoch must be >= 1 (got {self.max_steps_per_epoch})")
        if not self.blur_sigma > 0:
            raise InputError(f"blur_sigma must be > 0 (got {self.blur_sigma})")
        if not self.ood:
            raise InputError("ood needs at least one out set, e.g. noise")
        for name in self.ood:
            if name.startswith("rotated-"):
                try:
                    float(name.split("-", 1)[1])
                except ValueError:
                    raise InputError(
                        f"ood: {name!r} is not rotated-DEGREES, e.g. rotated-90"
                    ) from None

    def run_dir(self, regime: str, seed: int) -> Path:
        return Path(self.runs_dir).expanduser().resolve() / f"{self.arch}-{regime}-s{seed}"

    def checkpoint(self, regime: str, seed: int) -> Path:
        from leafscope.applications.ood_protocol import regime_options

        epochs = regime_options(regime, self.max_steps_per_epoch)["epochs"]
        return self.run_dir(regime, seed) / f"epoch_{epochs:04d}.pt"

    @property
    def data_sets(self) -> dict[str, str]:
        """Role -> name of the out sets read from data (``rotated-D`` is made, not read)."""
        names = [n for n in self.ood if not n.startswith("rotated-")]
        return {f"ood{i}": n for i, n in enumerate(names, start=1)}


@register_task
class OodProtocolTask(Task):
    """Issue 14's fair OOD protocol, one unit per (training setting, seed)."""

    name = "ood-protocol"
    Params = OodProtocolParams
    data_flag = "--in"
    default_split = "test"
    needs_model = False
    per_point = False
    images_only = True
    summary = "issue 14's fair OOD protocol: trained models, every baseline, fair leaf scores"
    description = (
        "Trains --seeds models per training setting (converged, partial) under --runs-dir "
        "(finished runs reused, interrupted ones resumed), fits every baseline of the detector "
        "registry and the leaf-pixel paths on the first --fit-points training points, tunes the "
        "leaf blend only on blurred training images, and reports AUROC, FPR95, AUPR-in and "
        "AUPR-out on the first --points test points against each --ood set: mean and std over "
        "the seeds of each setting."
    )
    columns = (
        "unit",
        "setting",
        "seed",
        "detector",
        "out_dataset",
        *METRIC_COLUMNS,
        "tuned_weight",
        "val_auroc",
        "model_record",
    )

    def extra_models(self, model: Any) -> dict[str, Any]:
        from leafscope.models.spec import ModelSpec

        p: OodProtocolParams = self.params
        return {
            f"{r}-s{s}": ModelSpec(checkpoint=str(p.checkpoint(r, s)))
            for r in p.regimes
            for s in range(p.seeds)
        }

    def extra_data(self, data: Any) -> dict[str, Any]:
        specs = _fit_and_in(data, "ood-protocol")
        for role, name in self.params.data_sets.items():
            specs[role] = ood_specs(data, [name])["ood1"]
        return specs

    def units(self, context: Context) -> list[Any]:
        p: OodProtocolParams = self.params
        return [
            {"model": f"{r}-s{s}", "setting": r, "seed": s}
            for r in p.regimes
            for s in range(p.seeds)
        ]

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.applications.ood_protocol import regime_options, train_run
        from leafscope.models import build_model_for_input

        p: OodProtocolParams = self.params
        _check_shapes(context, p.data_sets, "in")
        fit_set, in_set = context.data("fit"), context.data("in")
        need = p.fit_points + 2 * p.points
        if len(fit_set) < need:
            raise InputError(
                f"fit_points + 2 points = {need} training points are needed (the fit set and the "
                f"validation pair) but {fit_set.name} has {len(fit_set)}: lower them"
            )
        x, y = fit_set.take(range(len(fit_set)))
        if bool((y < 0).any()):
            raise InputError(f"the protocol trains on labels, but {fit_set.name} has none")
        for unit in self.units(context):
            regime, s = unit["setting"], unit["seed"]
            torch.manual_seed(s)
            model = build_model_for_input(p.arch, tuple(fit_set.input_shape), fit_set.num_classes)
            train_run(
                model, x, y, s, p.run_dir(regime, s), device=context.device, val_points=1000,
                meta={"data": fit_set.name, "setting": regime},
                **regime_options(regime, p.max_steps_per_epoch),
            )  # fmt: skip
        return {
            "in_points": min(p.points, len(in_set)),
            "validation_out": f"{fit_set.name} train images blurred, sigma {p.blur_sigma}",
        }

    def _data(self, context: Context) -> tuple:
        from leafscope.applications.ood_protocol import blurred
        from leafscope.data import rotate

        p: OodProtocolParams = self.params
        fit_set, in_set = context.data("fit"), context.data("in")
        fp, n = p.fit_points, p.points
        fit_x, fit_y = fit_set.take(range(fp))
        val_in, _ = fit_set.take(range(fp, fp + n))
        val_out = blurred(fit_set.take(range(fp + n, fp + 2 * n))[0], p.blur_sigma)
        x_in, _ = in_set.take(range(min(n, len(in_set))))
        roles = {name: role for role, name in p.data_sets.items()}
        outs = {}
        for name in p.ood:
            if name.startswith("rotated-"):
                outs[name] = rotate(x_in, float(name.split("-", 1)[1]))
            else:
                out_set = context.data(roles[name])
                outs[name] = out_set.take(range(min(n, len(out_set))))[0]
        return (fit_x, fit_y), (val_in, val_out), x_in, outs

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        import time

        from leafscope.applications.ood_protocol import (
            held_out_accuracy_of,
            model_summary,
            score_protocol_model,
        )
        from leafscope.data import check_model_input

        p: OodProtocolParams = self.params
        fit, validation, x_in, outs = self._data(context)
        parts = []
        for pos in positions:
            unit = context.units[pos]
            model = context.model(unit["model"])
            for name, x in {"the in-distribution set": x_in, **outs}.items():
                check_model_input(model, x[:1], source=f"the data ({name})")
            start = time.perf_counter()
            results, weight, val_auroc = score_protocol_model(
                model, fit, validation, x_in, outs, leaf_steps=p.leaf_steps,
                leaf_scale_points=p.leaf_scale_points, random_state=p.seed, seed=unit["seed"],
                progress=_progress(context),
            )  # fmt: skip
            seconds = time.perf_counter() - start
            record = {
                "setting": unit["setting"],
                "seed": unit["seed"],
                **model_summary(p.checkpoint(unit["setting"], unit["seed"])),
                "score_seconds": seconds,
                **self._held_out(model, context, unit["seed"], held_out_accuracy_of),
            }
            parts.append(
                _result_rows(
                    results,
                    int(pos),
                    setting=unit["setting"],
                    seed=unit["seed"],
                    tuned_weight=weight,
                    val_auroc=val_auroc,
                    model_record=json.dumps(record),
                )  # fmt: skip
            )
        return _to_arrays(parts, self.columns)

    @staticmethod
    def _held_out(model, context: Context, seed: int, held_out_accuracy_of) -> dict:
        fit_set, in_set = context.data("fit"), context.data("in")
        return held_out_accuracy_of(
            model, fit_set.take(range(len(fit_set))), in_set.take(range(len(in_set))), seed
        )

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        from leafscope.applications.ood_protocol import (
            PROTOCOL_BASELINES,
            WEIGHT_GRID,
            protocol_table,
        )

        per_model = _results_of(rows, extra=("setting",))
        models, tuned = [], []
        seen = set()
        for i in range(len(rows["unit"])):
            unit = int(rows["unit"][i])
            if unit in seen:
                continue
            seen.add(unit)
            record = json.loads(str(rows["model_record"][i]))
            models.append(record)
            tuned.append({
                "setting": record["setting"], "seed": record["seed"],
                "weight": float(rows["tuned_weight"][i]), "val_auroc": float(rows["val_auroc"][i]),
            })  # fmt: skip
        p: OodProtocolParams = self.params
        return {
            "table": protocol_table(per_model),
            "per_model": per_model,
            "tuned_weights": tuned,
            "models": models,
            "settings": {
                "out": list(p.ood),
                "points": p.points,
                "fit_points": p.fit_points,
                "leaf_steps": p.leaf_steps,
                "leaf_scale_points": p.leaf_scale_points,
                "validation_out": context.meta.get("validation_out"),
                "baselines": {k: {"detector": d, **o} for k, (d, o) in PROTOCOL_BASELINES.items()},
                "weight_grid": [float(w) for w in WEIGHT_GRID],
                "random_state": p.seed,
                "std": "population std over seeds (ddof=0)",
            },
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        from leafscope.applications.ood_protocol import markdown_table

        lines = [
            f"{m['setting']} seed {m['seed']}: val accuracy {m.get('val_accuracy')}, test "
            f"accuracy {m.get('test_accuracy')}, {m['checkpoint']}"
            for m in summary["models"]
        ]
        return lines + [markdown_table(summary["table"])]
