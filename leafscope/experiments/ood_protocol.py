"""The OOD protocol of issue 14 as one resumable JSON: every detector, several seeds, two
training regimes, fair leaf-based scores.

The pieces (training settings, the validation blur, one model's scores, the table) live in
:mod:`leafscope.applications.ood_protocol`; the ``leafscope ood-protocol`` command is the task
:class:`leafscope.tasks.ood.OodProtocolTask` (result folders, shards, resume). This module is the
library driver that reads sets by name:

- :func:`train_models` — train (resume, or reuse) one model per seed and setting;
  :func:`model_summary` reads a run's training record and :func:`held_out_accuracy` its
  accuracy on the whole validation split and test set.
- :func:`out_sets` — the reported out sets (Fashion-MNIST, uniform noise, scikit-learn digits,
  rotated MNIST by 90°, KMNIST / EMNIST letters when their files are present); the
  *validation* out set (Gaussian-blurred MNIST training images) is never reported: the only
  place a leaf-based score may be tuned.
- :func:`run_protocol` — fit every detector on in-distribution training points, score the
  in-distribution test points and every out set, per model; AUROC, FPR95, AUPR-in and AUPR-out,
  aggregated over seeds per setting. With ``json_path`` the result is written atomically after
  every model, and a rerun skips the models a partial JSON already holds.

CIFAR-10 against SVHN / CIFAR-100 is the same protocol with ``in_dataset="cifar10"`` and a
``cifar`` architecture; it runs only when those files are present (:func:`out_sets` skips
missing sets with a note).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from leafscope.applications.ood_protocol import (
    LEAF_SCORES,
    OUT_SETS,
    PROTOCOL_BASELINES,
    TRAINING,
    WEIGHT_GRID,
    blurred,
    held_out_accuracy_of,
    markdown_table,
    model_summary,
    regime_options,
    run_seed,
    score_protocol_model,
    train_run,
)
from leafscope.errors import DataFileError, InputError

__all__ = [
    "LEAF_SCORES",
    "OUT_SETS",
    "PROTOCOL_BASELINES",
    "TRAINING",
    "WEIGHT_GRID",
    "ProtocolResult",
    "blurred",
    "held_out_accuracy",
    "markdown_table",
    "model_summary",
    "out_sets",
    "run_protocol",
    "train_models",
]


def train_models(
    settings: list[str],
    seeds: list[int],
    runs_dir: str | os.PathLike,
    *,
    in_dataset: str = "mnist",
    arch: str = "lenet",
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    max_steps_per_epoch: int | None = None,
    val_points: int = 1000,
) -> dict[str, list[Path]]:
    """Train one model per (setting, seed), or reuse the final checkpoint of an earlier run
    (:func:`leafscope.applications.ood_protocol.train_run`).

    Args:
        settings: keys of :data:`TRAINING`.
        seeds: training seeds (the weights, the batch order and the 90/10 train/val split).
        runs_dir: runs go to ``runs_dir/{in_dataset}-{arch}-{setting}-s{seed}``.
        in_dataset, arch: data set and :func:`leafscope.models.build_model` architecture.
        data_dir: folder searched first for the data files.
        device: where to train.
        max_steps_per_epoch: cap the epochs of every setting (slow machines; recorded in the
            run's metrics.json); None keeps :data:`TRAINING`.
        val_points: validation images evaluated after each epoch (of the 10% held out).

    Returns:
        ``{setting: [final checkpoint per seed]}``.
    """
    from leafscope.data import load_images
    from leafscope.models import build_model

    unknown = [s for s in settings if s not in TRAINING]
    if unknown:
        raise InputError(f"unknown training settings {unknown}: use some of {list(TRAINING)}")
    data = load_images(in_dataset, "train", data_dir=data_dir)
    out: dict[str, list[Path]] = {}
    for setting in settings:
        out[setting] = []
        for seed in seeds:
            run = Path(runs_dir) / f"{in_dataset}-{arch}-{setting}-s{seed}"
            torch.manual_seed(seed)
            model = build_model(arch, num_classes=data.num_classes)
            final, acc, reused = train_run(
                model, data.images, data.labels, seed, run, device=device,
                val_points=val_points, meta={"data": in_dataset, "setting": setting},
                **regime_options(setting, max_steps_per_epoch),
            )  # fmt: skip
            how = "reused" if reused else "trained"
            print(f"{setting} seed {seed}: {how}, val accuracy {acc:.4f}", flush=True)
            out[setting].append(final)
    return out


def held_out_accuracy(
    checkpoint: str | os.PathLike,
    *,
    in_dataset: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 1000,
) -> dict:
    """Accuracy of a :func:`train_models` checkpoint on its run's whole validation split (the
    10 % of the training set held out with the run's seed, read from its metrics.json; seed 0
    without one) and on the whole test set (:func:`held_out_accuracy_of`).

    Returns:
        ``val_accuracy_full, val_points_full, test_accuracy, test_points`` (accuracies in [0, 1]).
    """
    from leafscope.data import load_images
    from leafscope.training import load_checkpoint

    model = load_checkpoint(checkpoint, device=device).eval()
    train = load_images(in_dataset, "train", data_dir=data_dir)
    test = load_images(in_dataset, "test", data_dir=data_dir)
    return held_out_accuracy_of(
        model,
        (train.images, train.labels),
        (test.images, test.labels),
        run_seed(checkpoint),
        batch_size=batch_size,
    )


def out_sets(
    in_dataset: str,
    names: list[str] | None,
    points: int,
    *,
    data_dir: str | os.PathLike | None = None,
) -> tuple[dict[str, Tensor], list[str]]:
    """Load the out sets (test splits, first ``points`` images), skipping absent files.

    Returns:
        ``(sets, notes)``: name → (points, ...) images, and one note per skipped set.
    """
    from leafscope.data import load_images, rotate

    sets, notes = {}, []
    for name in names or list(OUT_SETS.get(in_dataset, ("noise",))):
        try:
            if name.startswith("rotated-"):
                x = load_images(in_dataset, "test", data_dir=data_dir, limit=points).images
                sets[name] = rotate(x, float(name.split("-", 1)[1]))
            else:
                kw = {"download": False, "limit": points, "data_dir": data_dir}
                sets[name] = load_images(name, "test", **kw).images
        except (DataFileError, FileNotFoundError) as exc:
            notes.append(f"{name}: skipped, its files are not present ({type(exc).__name__})")
        except ValueError as exc:
            raise InputError(f"bad out set {name!r}: {exc}") from exc
    return sets, notes


@dataclass
class ProtocolResult:
    """What :func:`run_protocol` measured.

    Attributes:
        per_model: ``OODResult`` dicts (without raw scores) with ``setting``.
        table: mean and std over the seeds of each setting (``aggregate_seeds`` rows with
            ``setting``); empty until ``complete``.
        tuned_weights: ``setting, seed, weight, val_auroc`` of ``leaf-pixel-tuned`` per model.
        models: per model ``setting, seed, checkpoint``, its training record
            (:func:`model_summary`) and ``score_seconds`` (fit and score time of its detectors).
        notes: skipped out sets and the like.
        settings: everything a rerun must share to resume (and the checkpoints).
        seconds: wall time of this call (a resumed run counts only what it computed).
        complete: every model scored and the table built.
    """

    per_model: list[dict] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)
    tuned_weights: list[dict] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = False

    def to_json(self) -> dict:
        """The result as a JSON-able dict (the layout :func:`run_protocol` resumes from)."""
        return asdict(self)


def _protocol_settings(
    in_dataset, outs, points, fit_points, leaf_steps, leaf_scale_points, blur_sigma, random_state
) -> dict:
    """The settings a resumed run must share with the partial JSON it continues (JSON types)."""
    import json

    from leafscope.io import to_jsonable

    settings = {
        "in": in_dataset,
        "out": list(outs),
        "points": points,
        "fit_points": fit_points,
        "leaf_steps": leaf_steps,
        "leaf_scale_points": leaf_scale_points,
        "validation_out": f"{in_dataset} train images blurred, sigma {blur_sigma}",
        "baselines": {k: {"detector": d, **o} for k, (d, o) in PROTOCOL_BASELINES.items()},
        "weight_grid": list(WEIGHT_GRID),
        "random_state": random_state,
        "std": "population std over seeds (ddof=0)",
    }
    return json.loads(json.dumps(settings, default=to_jsonable))


def _model_key(setting: str, seed: int, checkpoint: str | os.PathLike) -> tuple:
    return setting, int(seed), str(checkpoint)


def _load_partial(path: Path, settings: dict) -> dict[tuple, dict]:
    """The finished models of an earlier run at ``path``: key → ``model, rows, tuned``.

    Raises:
        InputError: the file is not a protocol JSON, or was made with other settings.
    """
    import json

    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
        old_settings = {k: v for k, v in old["settings"].items() if k != "checkpoints"}
        models, rows, tuned = old["models"], old["per_model"], old["tuned_weights"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{path} exists but is not a protocol result ({type(exc).__name__}: {exc}): "
            "delete it or pass another `json_path`"
        ) from exc
    differ = sorted(
        k for k in set(settings) | set(old_settings) if settings.get(k) != old_settings.get(k)
    )
    if differ:
        raise InputError(
            f"{path} holds a run with other settings ({', '.join(differ)}): rerun with the "
            "same settings to resume it, or delete it / pass another `json_path`"
        )
    done = {}
    for m in models:
        key = _model_key(m["setting"], m["seed"], m["checkpoint"])
        done[key] = {
            "model": m,
            "rows": [r for r in rows if (r["setting"], r["seed"]) == key[:2]],
            "tuned": next(t for t in tuned if (t["setting"], t["seed"]) == key[:2]),
        }
    return done


def _score_model(path, setting, seed, data, leaf_steps, leaf_scale_points, device, rs) -> tuple:
    """Fit and score every baseline and leaf score of one model.

    Returns:
        ``(results, tuned)``: the ``OODResult`` list and the ``leaf-pixel-tuned`` record.
    """
    from leafscope.data import check_model_input
    from leafscope.training import load_checkpoint

    fit_x, fit_y, val_in, val_out, x_in, outs, in_name = data
    model = load_checkpoint(path, device=device)
    for name, x in {in_name: x_in, **outs}.items():
        check_model_input(model, x, source=f"the data ({name})")
    runs, weight, val_auroc = score_protocol_model(
        model, (fit_x, fit_y), (val_in, val_out), x_in, outs, leaf_steps=leaf_steps,
        leaf_scale_points=leaf_scale_points, random_state=rs, seed=seed,
    )  # fmt: skip
    tuned = {"setting": setting, "seed": seed, "weight": weight, "val_auroc": val_auroc}
    return runs, tuned


def _protocol_data(in_dataset, out_names, points, fit_points, blur_sigma, data_dir) -> tuple:
    """``((fit_x, fit_y, val_in, val_out, x_in, outs, in_dataset), notes)`` of the protocol."""
    from leafscope.data import load_images

    train = load_images(in_dataset, "train", data_dir=data_dir, limit=fit_points + 2 * points)
    x_in = load_images(in_dataset, "test", data_dir=data_dir, limit=points).images
    outs, notes = out_sets(in_dataset, out_names, points, data_dir=data_dir)
    images = train.images
    val_in = images[fit_points : fit_points + points]
    val_out = blurred(images[fit_points + points :], blur_sigma)
    data = (images[:fit_points], train.labels[:fit_points], val_in, val_out, x_in, outs, in_dataset)
    return data, notes


def _one_model(
    old: dict | None, path, setting: str, seed: int, data: tuple, opts: tuple, data_dir
) -> tuple:
    """``(results, tuned, model entry, how)`` of one model: from ``old`` (a partial JSON's
    record) when given, else scored now; the entry gains :func:`held_out_accuracy` if it
    lacks it."""
    from leafscope.applications.ood import OODResult

    accuracy = {"in_dataset": data[6], "data_dir": data_dir, "device": opts[2]}
    if old is not None:
        rows = [{k: v for k, v in r.items() if k != "setting"} for r in old["rows"]]
        runs = [OODResult(**r) for r in rows]
        entry = old["model"]
        if "test_accuracy" not in entry:
            entry = {**entry, **held_out_accuracy(path, **accuracy)}
        return runs, old["tuned"], entry, "taken from the partial JSON"
    t0 = time.perf_counter()
    runs, tuned = _score_model(path, setting, seed, data, *opts)
    seconds = time.perf_counter() - t0
    entry = {"setting": setting, "seed": seed, **model_summary(path), "score_seconds": seconds}
    entry.update(held_out_accuracy(path, **accuracy))
    return runs, tuned, entry, f"scored in {seconds:.0f} s"


def run_protocol(
    checkpoints: dict[str, list[str | os.PathLike]],
    *,
    in_dataset: str = "mnist",
    out_names: list[str] | None = None,
    points: int = 500,
    fit_points: int = 2000,
    leaf_steps: int = 10,
    leaf_scale_points: int = 200,
    blur_sigma: float = 2.0,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    random_state: int = 0,
    json_path: str | os.PathLike | None = None,
) -> ProtocolResult:
    """Every baseline of :data:`PROTOCOL_BASELINES` and the leaf scores of :data:`LEAF_SCORES`
    for every model, aggregated over the seeds of each setting.

    The fit set is the first ``fit_points`` training images; the in-distribution test set the
    first ``points`` test images. ``leaf-pixel-tuned`` takes the blend weight (grid
    :data:`WEIGHT_GRID`) with the best AUROC on the validation pair — ``points`` training images
    after the fit set against Gaussian-blurred (``blur_sigma``) training images after those —
    which is never reported; every other score is untuned.

    Args:
        checkpoints: setting → checkpoint files (one per seed; the seed is the list index).
        leaf_steps: path steps of the leaf scores. leaf_scale_points: see
            :class:`~leafscope.applications.ood_leaf.LeafPixelDetector`.
        json_path: write the result here (atomically) after every model and at the end; if
            the file holds a partial run with the same settings, its finished models (same
            setting, seed and checkpoint) are taken from it, not scored again.

    Returns:
        A :class:`ProtocolResult`; its table rows carry ``setting``.

    Raises:
        InputError: ``json_path`` holds a run with other settings, or bad sizes.
    """
    from leafscope.applications import aggregate_seeds
    from leafscope.io import write_json

    if points < 2 or fit_points < 2:
        raise InputError(f"points and fit_points must be >= 2 (got {points}, {fit_points})")
    start = time.perf_counter()
    data, notes = _protocol_data(in_dataset, out_names, points, fit_points, blur_sigma, data_dir)
    settings = _protocol_settings(
        in_dataset,
        data[5],
        points,
        fit_points,
        leaf_steps,
        leaf_scale_points,
        blur_sigma,
        random_state,
    )
    json_path = Path(json_path) if json_path is not None else None
    done = _load_partial(json_path, settings) if json_path is not None else {}
    result = ProtocolResult(notes=notes, settings=settings)
    result.settings["checkpoints"] = {k: [str(p) for p in v] for k, v in checkpoints.items()}
    for setting, paths in checkpoints.items():
        runs = []
        for seed, path in enumerate(paths):
            old = done.get(_model_key(setting, seed, path))
            opts = (leaf_steps, leaf_scale_points, device, random_state)
            model_runs, tuned, entry, how = _one_model(
                old, path, setting, seed, data, opts, data_dir
            )
            runs += model_runs
            result.per_model += [{"setting": setting, **r.to_json()} for r in model_runs]
            result.tuned_weights.append(tuned)
            result.models.append(entry)
            result.seconds = time.perf_counter() - start
            if json_path is not None:
                write_json(json_path, result.to_json())
            print(f"{setting} seed {seed}: {how} ({result.seconds:.0f} s)", flush=True)
        result.table += [{"setting": setting, **row} for row in aggregate_seeds(runs)]
    result.complete, result.seconds = True, time.perf_counter() - start
    if json_path is not None:
        write_json(json_path, result.to_json())
    return result
