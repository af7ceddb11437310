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

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leafscope.errors import CheckpointError, InputError
from leafscope.execution import Executor
from leafscope.experiments.tasks import Source, exclusive, map_units, resolve, seeded
from leafscope.models.features import layer_features
from leafscope.nnk.geometry import last_hidden_layer, loo_test_correlation, mgm_summary
from leafscope.nnk.interpolation import NNKClassifier
from leafscope.nnk.stopping import (
    ChannelEarlyStopping,
    train_with_channel_stopping,
    validation_stopping_epoch,
)
from leafscope.training import fit

__all__ = [
    "EpochGeometry",
    "GeometryTask",
    "RunGeometry",
    "compare_early_stopping",
    "early_stopping_seeds",
    "geometry_unit",
    "run_geometry",
]


@dataclass
class EpochGeometry:
    """Geometry of one checkpoint: ``layers`` maps a layer to its MGM summary; errors in [0, 1]."""

    epoch: int
    step: int
    checkpoint: str
    layers: dict[str, Any]
    loo_error: float
    test_error: float | None = None
    val_accuracy: float | None = None


@dataclass
class RunGeometry:
    """Geometry of a run across its epoch checkpoints (oldest first)."""

    run_dir: str
    layers: list[str]
    loo_layer: str
    k: int
    kernel: str
    n_points: int
    epochs: list[EpochGeometry] = field(default_factory=list)

    @property
    def loo_errors(self) -> list[float]:
        return [e.loo_error for e in self.epochs]

    @property
    def test_errors(self) -> list[float | None]:
        return [e.test_error for e in self.epochs]

    @property
    def pearson(self) -> float | None:
        """Pearson r of LOO vs test error over the epochs with a test error (None if < 3)."""
        pairs = [(e.loo_error, e.test_error) for e in self.epochs if e.test_error is not None]
        if len(pairs) < 3:
            return None
        return loo_test_correlation([p[0] for p in pairs], [p[1] for p in pairs])

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["pearson_loo_vs_test"] = self.pearson
        return out


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
        kk = min(task.loo_k or task.k, len(images) - 1)
        clf = NNKClassifier(k=kk, kernel=task.kernel, device=str(device))
        loo = clf.fit(feats, labels).loo_error_
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


def compare_early_stopping(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    out_dir: str | os.PathLike,
    *,
    model: str | nn.Module = "lenet",
    layer: str = "conv2",
    points: int = 1000,
    epochs: int = 6,
    patience: int = 2,
    k: int = 15,
    seed: int = 0,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """CW-DeepNNK (no validation data) against validation-based early stopping, same init.

    Args:
        train, val, test: ``(images, labels)``; CW-DeepNNK measures the first ``points`` of train.
        out_dir: two runs are written to ``out_dir/val`` and ``out_dir/cw``.
        model: a zoo name, built for the data's point shape and class count with
            :func:`leafscope.models.build_model_for_input`, or a fresh ``nn.Module`` (its
            initial weights are used for both runs); layer: the channel layer.
        epochs: at most this many epochs; patience: for both rules; fit_kwargs: passed to fit.

    Returns:
        JSON-able dict: per-epoch val/test accuracy of the validation run, its stop and best
        epochs and test accuracy at the best epoch; the CW stop epoch, frozen epochs, per-epoch
        channel LOO errors and final test accuracy.
    """
    from leafscope.models import build_model_for_input, load_weights
    from leafscope.training import evaluate, list_checkpoints

    out = Path(out_dir)
    fit_kwargs.setdefault("progress", False)
    device = fit_kwargs.get("device", "cpu")
    torch.manual_seed(seed)
    if isinstance(model, nn.Module):
        net = model
    else:
        classes = int(max(int(t[1].max()) for t in (train, val, test) if len(t[1]))) + 1
        net = build_model_for_input(model, tuple(train[0].shape[1:]), classes)
    init = {n: t.clone() for n, t in net.state_dict().items()}
    res = fit(net, train, val, epochs=epochs, seed=seed, out_dir=out / "val", overwrite=True,
              **fit_kwargs)  # fmt: skip
    val_acc = [r["val_accuracy"] for r in res.history]
    saved = copy.deepcopy(net)  # each epoch's weights loaded into it (any nn.Module works)
    test_acc = {
        i.epoch: evaluate(load_weights(saved, i.path), test, device=device)[1]
        for i in list_checkpoints(out / "val")
        if i.kind == "epoch" and i.epoch > 0
    }
    stop, best = validation_stopping_epoch(val_acc, patience)
    net.load_state_dict(init)
    cb = ChannelEarlyStopping(
        layer, train[0][:points], train[1][:points], patience=patience, k=k, device=device
    )
    cw = train_with_channel_stopping(net, train, cb, epochs=epochs, out_dir=out / "cw", seed=seed,
                                     **fit_kwargs)  # fmt: skip
    return {
        "validation": {
            "val_accuracy": val_acc,
            "test_accuracy": [test_acc[e] for e in sorted(test_acc)],
            "stop_epoch": stop,
            "best_epoch": best,
            "test_accuracy_at_best": test_acc[best],
        },
        "cw_deepnnk": {
            "stop_epoch": cw.stop_epoch,
            "all_frozen": cw.stopped,
            "frozen_at": cw.frozen_at,
            "channel_loo_error": [e.tolist() for e in cb.errors],
            "test_accuracy": evaluate(net, test, device=device)[1],
        },
    }


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
