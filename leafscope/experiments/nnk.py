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
from leafscope.models.features import layer_features
from leafscope.nnk.geometry import last_hidden_layer, loo_test_correlation, mgm_summary
from leafscope.nnk.interpolation import NNKClassifier
from leafscope.nnk.stopping import (
    ChannelEarlyStopping,
    train_with_channel_stopping,
    validation_stopping_epoch,
)
from leafscope.training import fit

__all__ = ["EpochGeometry", "RunGeometry", "compare_early_stopping", "run_geometry"]


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


def run_geometry(
    run_dir: str | os.PathLike,
    images: torch.Tensor,
    labels: torch.Tensor,
    layers: list[str],
    *,
    k: int = 15,
    kernel: str = "cosine",
    test_images: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
    loo_layer: str | None = None,
    loo_k: int | None = None,
    include_initial: bool = False,
    orientation: bool = True,
    step_checkpoints: bool = False,
    device: str | torch.device = "cpu",
) -> RunGeometry:
    """MGMs per layer, DeepNNK LOO error and test error for every epoch checkpoint of a run.

    Args:
        run_dir: folder of ``epoch_NNNN.pt`` files (``leafscope train --out``).
        images, labels: (N, ...) training inputs and (N,) labels the geometry is measured on.
        layers: layer names for the MGMs.
        k, kernel: NNK graph settings (MGMs; also the LOO classifier unless ``loo_k``).
        test_images, test_labels: held-out set for the test error (optional).
        loo_layer: layer whose features the LOO classifier uses (default: last hidden layer).
        include_initial: also measure epoch 0 (the initial weights).
        orientation: also compute the orientation MGM (see :func:`layer_geometry`).
        step_checkpoints: also measure the ``step_NNNNNNNN.pt`` checkpoints (finer than epochs;
            the figures then use the optimizer step as their x axis).
        device: where the forward passes run.

    Returns:
        :class:`RunGeometry`.

    Raises:
        CheckpointError: no epoch checkpoint in ``run_dir``. InputError: bad layer names.
    """
    from leafscope.training import evaluate, list_checkpoints, load_checkpoint

    if (test_images is None) != (test_labels is None):
        raise InputError("pass both test_images and test_labels, or neither")
    if len(images) != len(labels):
        raise InputError(f"{len(images)} images but {len(labels)} labels: one label per image")
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
    result: RunGeometry | None = None
    for info in infos:
        model = load_checkpoint(info.path, device=device)
        hidden = loo_layer or last_hidden_layer(model)
        wanted = list(dict.fromkeys([*layers, hidden]))
        feats = layer_features(model, images, wanted, device=device)
        summaries = {name: mgm_summary(feats[name], k, kernel, orientation) for name in layers}
        clf = NNKClassifier(k=min(loo_k or k, len(images) - 1), kernel=kernel)
        loo = clf.fit(feats[hidden], labels).loo_error_
        test_error = None
        if test_images is not None:
            test_error = 1.0 - evaluate(model, (test_images, test_labels), device=device)[1]
        if result is None:
            result = RunGeometry(str(Path(run_dir)), list(layers), hidden, k, kernel, len(images))
        result.epochs.append(
            EpochGeometry(
                info.epoch, info.step, str(info.path), summaries, loo, test_error, info.val_accuracy
            )
        )
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
