"""The OOD protocol of issue 14: every detector, several seeds, two training regimes, fair
leaf-based scores.

- :data:`TRAINING` — the two model settings: ``converged`` (LeNet on MNIST at its plateau:
  five full epochs, momentum 0.9, the LR divided by 10 after the third; the OOD literature's
  setting; ``max_steps_per_epoch`` caps the epochs on slow machines) and ``partial`` (100 steps
  with momentum 0.9, a ninth of an epoch: partially trained).
- :func:`train_models` — train (resume, or reuse) one model per seed and setting with
  :func:`leafscope.training.fit`; :func:`model_summary` reads a run's training record and
  :func:`held_out_accuracy` its accuracy on the whole validation split and test set.
- :func:`out_sets` — the reported out sets (Fashion-MNIST, uniform noise, scikit-learn digits,
  rotated MNIST by 90°, KMNIST / EMNIST letters when their files are present) and the
  *validation* out set (Gaussian-blurred MNIST training images), which is never reported: the
  only place a leaf-based score may be tuned.
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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from leafscope.errors import DataFileError, InputError

__all__ = [
    "TRAINING",
    "ProtocolResult",
    "blurred",
    "held_out_accuracy",
    "markdown_table",
    "model_summary",
    "out_sets",
    "LEAF_SCORES",
    "PROTOCOL_BASELINES",
    "run_protocol",
    "train_models",
]

#: Training settings: keyword arguments of :func:`leafscope.training.fit` per setting.
TRAINING: dict[str, dict[str, Any]] = {
    "converged": {"epochs": 5, "lr": 0.05, "momentum": 0.9, "lr_step": 3, "lr_gamma": 0.1},
    "partial": {"epochs": 1, "lr": 0.05, "momentum": 0.9, "max_steps_per_epoch": 100},
}


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
    """Train one model per (setting, seed), or reuse the final checkpoint of an earlier run.

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
    from leafscope.data import load_images, train_val_split
    from leafscope.models import build_model
    from leafscope.training import fit

    unknown = [s for s in settings if s not in TRAINING]
    if unknown:
        raise InputError(f"unknown training settings {unknown}: use some of {list(TRAINING)}")
    data = load_images(in_dataset, "train", data_dir=data_dir)
    out: dict[str, list[Path]] = {}
    for setting in settings:
        out[setting] = []
        for seed in seeds:
            run = Path(runs_dir) / f"{in_dataset}-{arch}-{setting}-s{seed}"
            options = dict(TRAINING[setting])
            if max_steps_per_epoch is not None:
                options["max_steps_per_epoch"] = min(
                    max_steps_per_epoch, options.get("max_steps_per_epoch") or max_steps_per_epoch
                )
            final = run / f"epoch_{options['epochs']:04d}.pt"
            reused = final.exists()
            tr, va = train_val_split(len(data), 0.1, seed)
            torch.manual_seed(seed)
            model = build_model(arch, num_classes=data.num_classes)
            # resume=True: a finished run is only restored (its settings checked), an
            # interrupted one continues from its newest checkpoint, an empty folder starts.
            result = fit(
                model,
                (data.images[tr], data.labels[tr]),
                (data.images[va[:val_points]], data.labels[va[:val_points]]),
                seed=seed,
                device=device,
                out_dir=run,
                resume=True,
                progress=False,
                meta={"data": in_dataset, "setting": setting},
                **options,
            )
            acc = result.history[-1]["val_accuracy"]
            how = "reused" if reused else "trained"
            print(f"{setting} seed {seed}: {how}, val accuracy {acc:.4f}", flush=True)
            out[setting].append(final)
    return out


def model_summary(checkpoint: str | os.PathLike) -> dict:
    """The training record of a :func:`train_models` checkpoint, from its run's metrics.json.

    Returns:
        ``checkpoint``, and when metrics.json is present: ``val_accuracy`` (last epoch, in
        [0, 1]), ``val_accuracy_per_epoch``, ``epochs``, ``steps``, ``train_seconds`` (sum of
        the epochs' wall times) and the optimiser ``settings``.
    """
    import json

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
    without one) and on the whole test set — the precise plateau check that the run's own
    per-epoch ``val_accuracy`` (on ``val_points`` of that split) is not.

    Returns:
        ``val_accuracy_full, val_points_full, test_accuracy, test_points`` (accuracies in [0, 1]).
    """
    import json

    from leafscope.data import load_images, train_val_split
    from leafscope.training import load_checkpoint

    metrics = Path(checkpoint).parent / "metrics.json"
    seed = json.loads(metrics.read_text())["settings"]["seed"] if metrics.exists() else 0
    model = load_checkpoint(checkpoint, device=device).eval()

    def accuracy(x: Tensor, y: Tensor) -> float:
        with torch.no_grad():
            pred = [
                model(x[i : i + batch_size].to(device)).argmax(1).cpu()
                for i in range(0, len(x), batch_size)
            ]
        return float((torch.cat(pred) == y).double().mean())

    train = load_images(in_dataset, "train", data_dir=data_dir)
    test = load_images(in_dataset, "test", data_dir=data_dir)
    _, va = train_val_split(len(train), 0.1, seed)
    return {
        "val_accuracy_full": accuracy(train.images[va], train.labels[va]),
        "val_points_full": len(va),
        "test_accuracy": accuracy(test.images, test.labels),
        "test_points": len(test),
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


#: Out sets of each in-distribution set: built-in names, plus ``rotated-90`` (the in set's
#: test images rotated by 90°).
OUT_SETS: dict[str, tuple[str, ...]] = {
    "mnist": ("fashion-mnist", "noise", "digits", "rotated-90", "kmnist", "emnist-letters"),
    "cifar10": ("svhn", "cifar100", "noise"),
}


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


#: Baselines of the protocol with their options (Mahalanobis: tied covariance, and the
#: Ledoit-Wolf shrinkage variant).
PROTOCOL_BASELINES: dict[str, tuple[str, dict]] = {
    "msp": ("msp", {}),
    "maxlogit": ("maxlogit", {}),
    "energy": ("energy", {}),
    "react": ("react", {"percentile": 90.0}),
    "vim": ("vim", {}),
    "mahalanobis": ("mahalanobis", {}),
    "mahalanobis-lw": ("mahalanobis", {"shrinkage": "ledoit-wolf"}),
    "knn": ("knn", {"k": 50}),
    "pixel-nn": ("pixel-nn", {}),
}
#: Scores computed from one set of leaf paths (:class:`LeafPixelDetector.components`).
LEAF_SCORES = ("leaf-distance", "leaf-pixel", "leaf-pixel-tuned")
WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def _tune_weight(det, val_in: Tensor, val_out: Tensor) -> tuple[float, float]:
    """The blend weight with the best AUROC on the validation pair (ties: the smallest)."""
    from leafscope.applications.metrics import auroc

    c_in, c_out = det.components(val_in), det.components(val_out)
    scores = [auroc(det.combine(*c_in, w), det.combine(*c_out, w)) for w in WEIGHT_GRID]
    best = int(np.argmax(scores))
    return float(WEIGHT_GRID[best]), float(scores[best])


def _leaf_results(det, x_in, outs, weight, seed) -> list:
    from leafscope.applications.ood import score_result

    comp_in = det.components(x_in)
    comp_out = {name: det.components(x) for name, x in outs.items()}
    results = []
    for name, w in (
        ("leaf-distance", 0.0),
        ("leaf-pixel", det.weight),
        ("leaf-pixel-tuned", weight),
    ):
        s_in = det.combine(*comp_in, w)
        for out_name, c in comp_out.items():
            results.append(score_result(name, out_name, s_in, det.combine(*c, w), seed, False))
    return results


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
            "delete it or pass another --json"
        ) from exc
    differ = sorted(
        k for k in set(settings) | set(old_settings) if settings.get(k) != old_settings.get(k)
    )
    if differ:
        raise InputError(
            f"{path} holds a run with other settings ({', '.join(differ)}): rerun with the "
            "same settings to resume it, or delete it / pass another --json"
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
    from leafscope.applications import evaluate_detectors, make_detector
    from leafscope.data import check_model_input
    from leafscope.training import load_checkpoint

    fit_x, fit_y, val_in, val_out, x_in, outs, in_name = data
    model = load_checkpoint(path, device=device)
    for name, x in {in_name: x_in, **outs}.items():
        check_model_input(model, x, source=f"the data ({name})")
    dets = {
        name: make_detector(kind, model, random_state=rs, **opts).fit(fit_x, fit_y)
        for name, (kind, opts) in PROTOCOL_BASELINES.items()
    }
    runs = evaluate_detectors(dets, x_in, outs, seed=seed, keep_scores=False)
    leaf = make_detector(
        "leaf-pixel",
        model,
        max_steps=leaf_steps,
        n_scale_points=leaf_scale_points,
        random_state=rs,
    ).fit(fit_x, fit_y)
    weight, val_auroc = _tune_weight(leaf, val_in, val_out)
    runs += _leaf_results(leaf, x_in, outs, weight, seed)
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
