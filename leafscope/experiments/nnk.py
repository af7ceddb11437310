"""NNK experiments across training: the geometry of a run's checkpoints and the comparison of
CW-DeepNNK early stopping with validation-based early stopping.

:func:`run_geometry`: for every epoch checkpoint of a run, the manifold graph metrics (MGMs) of
the NNK graph of each requested layer's features, the DeepNNK leave-one-out (LOO) error of the
NNK interpolation classifier on the training features of the last hidden layer (the input of the
last ``nn.Linear``; a point's own solve excludes it), and the test error. The Pearson
correlation of LOO and test error across epochs says whether LOO tracks generalisation without
held-out data. :func:`compare_early_stopping`: both stopping rules from the same initialisation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leafscope.errors import CheckpointError, InputError
from leafscope.execution import Executor
from leafscope.experiments.tasks import Source, exclusive, map_units, resolve, seeded
from leafscope.models.features import layer_features
from leafscope.nnk.geometry import (
    EpochGeometry,
    RunGeometry,
    last_hidden_layer,
    loo_error,
    mgm_summary,
)
from leafscope.nnk.stopping import compare_early_stopping

__all__ = [
    "EpochGeometry",
    "GeometryTask",
    "RunGeometry",
    "compare_early_stopping",
    "early_stopping_seeds",
    "geometry_unit",
    "run_geometry",
]


@dataclass(frozen=True)
class GeometryTask:
    """One unit of :func:`run_geometry`: the MGMs of ``layer`` at one checkpoint, or (``layer``
    None) the checkpoint's DeepNNK LOO error and test error.

    Attributes:
        checkpoint: the checkpoint file.
        layer: a layer name, or None for the LOO / test-error unit.
        images, labels: training points (tensors or :class:`~leafscope.experiments.tasks.Source`).
        test_images, test_labels: held-out points (or None).
        k, kernel, orientation, loo_layer, loo_k: see :func:`run_geometry`.
        device: where the forward passes and the NNK solves run (``"cuda"``: the worker's own GPU).
    """

    checkpoint: str
    layer: str | None
    images: Any
    labels: Any
    test_images: Any
    test_labels: Any
    k: int
    kernel: str
    orientation: bool
    loo_layer: str | None
    loo_k: int | None
    device: str


def _checkpoint_model(path: str, device: torch.device) -> nn.Module:
    from leafscope.execution import cached
    from leafscope.training import load_checkpoint

    stat = os.stat(path)  # a checkpoint rewritten in place is loaded again
    key = ("nnk-checkpoint", path, stat.st_mtime_ns, stat.st_size, str(device))
    return cached(key, lambda: load_checkpoint(path, device=device))


def geometry_unit(task: GeometryTask) -> Any:
    """Run one :class:`GeometryTask` (a top-level task function for any executor).

    Returns:
        The layer's MGM summary; for the LOO unit ``(loo layer, LOO error, test error or None)``.
    """
    from leafscope.execution import worker_device
    from leafscope.training import evaluate

    device = worker_device(task.device)
    model = _checkpoint_model(task.checkpoint, device)
    images, labels = resolve(task.images), resolve(task.labels)
    hidden = task.loo_layer or last_hidden_layer(model)
    layer = hidden if task.layer is None else task.layer
    test_error = None
    with torch.no_grad(), exclusive(model):  # hooks: one thread at a time on a shared model
        feats = layer_features(model, images, [layer], device=device)[layer]
        if task.layer is None and task.test_images is not None:
            test = (resolve(task.test_images), resolve(task.test_labels))
            test_error = 1.0 - evaluate(model, test, device=device)[1]
    with torch.no_grad():
        if task.layer is not None:
            return mgm_summary(feats, task.k, task.kernel, task.orientation, device)
        loo = loo_error(feats, labels, task.loo_k or task.k, task.kernel, device)
    return hidden, loo, test_error


def _geometry_checkpoints(run_dir: Any, include_initial: bool, step_checkpoints: bool) -> list:
    from leafscope.training import list_checkpoints

    kinds = ("epoch", "step") if step_checkpoints else ("epoch",)
    infos = [i for i in list_checkpoints(run_dir) if i.kind in kinds]
    infos = [i for i in infos if include_initial or i.step > 0]
    # a step checkpoint written at an epoch's end holds the same weights as the epoch one
    epoch_steps = {i.step for i in infos if i.kind == "epoch"}
    infos = [i for i in infos if i.kind == "epoch" or i.step not in epoch_steps]
    if not infos:
        raise CheckpointError(
            f"no epoch checkpoints (epoch_NNNN.pt, epoch >= 1) in {run_dir}: train the run first"
        )
    return infos


def run_geometry(
    run_dir: str | os.PathLike,
    images: torch.Tensor | Source,
    labels: torch.Tensor | Source,
    layers: list[str],
    *,
    k: int = 15,
    kernel: str = "cosine",
    test_images: torch.Tensor | Source | None = None,
    test_labels: torch.Tensor | Source | None = None,
    loo_layer: str | None = None,
    loo_k: int | None = None,
    include_initial: bool = False,
    orientation: bool = True,
    step_checkpoints: bool = False,
    device: str | torch.device = "cpu",
    executor: Executor | None = None,
) -> RunGeometry:
    """MGMs per layer, DeepNNK LOO error and test error for every epoch checkpoint of a run.

    One task per (checkpoint, layer) and one LOO / test-error task per checkpoint run on
    ``executor``; the result does not depend on it.

    Args:
        run_dir: folder of ``epoch_NNNN.pt`` files (``leafscope train --out``).
        images, labels: (N, ...) training inputs and (N,) labels the geometry is measured on
            (tensors, or :class:`~leafscope.experiments.tasks.Source` s the workers load).
        layers: layer names for the MGMs.
        k, kernel: NNK graph settings (MGMs; also the LOO classifier unless ``loo_k``).
        test_images, test_labels: held-out set for the test error (optional).
        loo_layer: layer whose features the LOO classifier uses (default: last hidden layer).
        include_initial: also measure epoch 0 (the initial weights).
        orientation: also compute the orientation MGM (see :func:`layer_geometry`).
        step_checkpoints: also measure the ``step_NNNNNNNN.pt`` checkpoints (finer than epochs;
            the figures then use the optimizer step as their x axis).
        device: where the forward passes run.
        executor: a :class:`leafscope.execution.Executor` (default: in this process).

    Returns:
        :class:`RunGeometry`.

    Raises:
        CheckpointError: no epoch checkpoint in ``run_dir``. InputError: bad layer names.
    """
    if (test_images is None) != (test_labels is None):
        raise InputError("pass both test_images and test_labels, or neither")
    n = len(resolve(images))
    if n != len(resolve(labels)):
        raise InputError(f"{n} images but {len(resolve(labels))} labels: one label per image")
    infos = _geometry_checkpoints(run_dir, include_initial, step_checkpoints)
    common = (images, labels, test_images, test_labels, k, kernel, orientation, loo_layer, loo_k)
    units = [(str(i.path), layer) for i in infos for layer in [*layers, None]]
    tasks = [  # absolute paths: workers may run elsewhere
        GeometryTask(os.path.abspath(path), layer, *common, str(device)) for path, layer in units
    ]
    done = dict(zip(units, map_units(executor, geometry_unit, tasks, "units"), strict=True))
    result: RunGeometry | None = None
    for info in infos:
        path = str(info.path)
        hidden, loo, test_error = done[(path, None)]
        if result is None:
            result = RunGeometry(str(Path(run_dir)), list(layers), hidden, k, kernel, n)
        summaries = {name: done[(path, name)] for name in layers}
        record = EpochGeometry(info.epoch, info.step, path, summaries, loo, test_error)
        record.val_accuracy = info.val_accuracy
        result.epochs.append(record)
    assert result is not None
    return result


@dataclass(frozen=True)
class StoppingTask:
    """One seed of :func:`early_stopping_seeds`.

    Attributes:
        seed: seed of the initialisation and the batch order.
        data: ``(train, val, test)`` pairs of ``(images, labels)``, or a
            :class:`~leafscope.experiments.tasks.Source` of them.
        out_dir: folder of the seed's two runs.
        model: a zoo name or a picklable factory returning a fresh ``nn.Module``.
        options: keyword arguments of :func:`compare_early_stopping` as sorted pairs.
    """

    seed: int
    data: Any
    out_dir: str
    model: Any
    options: tuple


def stopping_unit(task: StoppingTask) -> dict[str, Any]:
    """:func:`compare_early_stopping` for one seed (a top-level task for any executor); a
    factory ``model`` is called right after ``torch.manual_seed(seed)``."""
    from leafscope.execution import worker_device

    options = dict(task.options)
    options["device"] = worker_device(options.get("device", "cpu"))
    train, val, test = resolve(task.data)
    with seeded():
        model = task.model
        if callable(model):
            torch.manual_seed(task.seed)
            model = model()
        return compare_early_stopping(
            train, val, test, task.out_dir, model=model, seed=task.seed, **options
        )


_STOPPING_SUMMARY = {
    "validation_stop_epoch": ("validation", "stop_epoch"),
    "validation_best_epoch": ("validation", "best_epoch"),
    "validation_test_accuracy": ("validation", "test_accuracy_at_best"),
    "cw_stop_epoch": ("cw_deepnnk", "stop_epoch"),
    "cw_test_accuracy": ("cw_deepnnk", "test_accuracy"),
}


def early_stopping_seeds(
    data: Any,
    out_dir: str | os.PathLike,
    *,
    seeds: list[int],
    model: str | Any = "lenet",
    executor: Executor | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`compare_early_stopping` for every seed (one task each on ``executor``), and the
    mean and sample std (ddof=1; 0 for one seed) of the stopping epochs and test accuracies.

    Args:
        data: ``(train, val, test)`` pairs ``(images, labels)`` or a
            :class:`~leafscope.experiments.tasks.Source` of them (what remote workers load).
        out_dir: the runs of seed ``s`` go to ``out_dir/seed{s}`` (with one seed: ``out_dir``).
        seeds: the seeds, in the order of the results.
        model: zoo name, or a picklable factory (e.g. ``functools.partial``) of fresh models.
        executor: a :class:`leafscope.execution.Executor` (default: in this process).
        **options: passed to :func:`compare_early_stopping` (``layer``, ``points``, ``epochs``,
            ``patience``, ``k``, ``device`` and the fit settings).

    Returns:
        ``{"seeds", "per_seed": [compare_early_stopping result, ...], "summary": {name:
        {"mean", "std", "values"}}}``.
    """
    from leafscope.experiments.thermo.common import mean_std

    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct and at least one (got {seeds})")
    out = Path(out_dir)
    options = {k: str(v) if isinstance(v, torch.device) else v for k, v in options.items()}
    tasks = [
        StoppingTask(s, data, str(out if len(seeds) == 1 else out / f"seed{s}"), model,
                     tuple(sorted(options.items())))
        for s in seeds
    ]  # fmt: skip
    per_seed = map_units(executor, stopping_unit, tasks, "seeds")
    summary = {}
    for name, (part, key) in _STOPPING_SUMMARY.items():
        values = [float(r[part][key]) for r in per_seed]
        mean, std = mean_std(values)
        summary[name] = {"mean": mean, "std": std, "values": values}
    return {"seeds": list(seeds), "per_seed": per_seed, "summary": summary}
