"""Channel-wise early stopping without a validation set (CW-DeepNNK).

After every epoch, the features of one layer on a fixed subset of *training* points are split by
channel; each channel gets the leave-one-out (LOO) error of the NNK interpolation classifier on
its features. A channel whose LOO error has not improved (by more than ``min_delta``) for
``patience`` consecutive epochs is frozen: its weights (the output channel of ``param_layer``)
are restored to their value at freezing after every optimizer step, so any optimizer leaves them
unchanged. Training stops when every channel is frozen.

:func:`leafscope.training.fit` has no stop hook, so :func:`train_with_channel_stopping` calls it
one epoch at a time (``resume=True``) and stops when the callback says so.
:func:`compare_early_stopping` trains the same initial network with both rules.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.models.features import layer_features
from leafscope.models.inspect import resolve_modules, weight_module, weighted_layers
from leafscope.nnk.interpolation import NNKClassifier
from leafscope.training import Callback, FitResult, fit

__all__ = [
    "ChannelEarlyStopping",
    "ChannelStoppingResult",
    "ChannelStoppingRule",
    "channel_loo_errors",
    "compare_early_stopping",
    "train_with_channel_stopping",
    "validation_stopping_epoch",
]


def channel_loo_errors(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    layer: str,
    *,
    k: int = 15,
    kernel: str = "cosine",
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """NNK LOO error of each channel's features.

    Args:
        model: the network; images (N, ...), labels (N,): the points measured.
        layer: a layer with a channel axis (output (N, C, ...)).
        k, kernel: NNK classifier settings (k capped at N − 1).
        device: where the forward pass and the NNK solves run.

    Returns:
        (C,) LOO error rates in [0, 1].
    """
    feats = layer_features(model, images, [layer], shape="channels", device=device)[layer]
    if feats.ndim != 3 or feats.shape[2] < 2:
        raise InputError(
            f"layer {layer!r} has no channel axis with several values per channel (features "
            f"{tuple(feats.shape)}): pick a convolutional layer, output (N, C, H, W)"
        )
    kk = min(k, feats.shape[0] - 1)
    dev = str(device)
    return np.array(
        [NNKClassifier(k=kk, kernel=kernel, device=dev).fit(feats[:, c], labels).loo_error_
         for c in range(feats.shape[1])]
    )  # fmt: skip


class ChannelStoppingRule:
    """Per-channel patience rule on a sequence of error vectors (lower is better).

    Args:
        patience: epochs without improvement after which a channel freezes (≥ 1).
        min_delta: an error counts as an improvement only if below the best by more than this.

    Attributes:
        best: (C,) best error so far; wait: (C,) epochs since the last improvement;
        frozen: (C,) bool; frozen_at: (C,) epoch at which each channel froze (-1 = not yet).
    """

    def __init__(self, patience: int = 2, min_delta: float = 0.0) -> None:
        if not isinstance(patience, int) or patience < 1:
            raise InputError(f"patience must be an integer >= 1, got {patience!r}")
        if min_delta < 0:
            raise InputError(f"min_delta must be >= 0, got {min_delta}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best: np.ndarray | None = None
        self.wait: np.ndarray | None = None
        self.frozen: np.ndarray | None = None
        self.frozen_at: np.ndarray | None = None

    def update(self, epoch: int, errors: np.ndarray) -> np.ndarray:
        """Feed the errors of epoch ``epoch``; returns the mask of channels newly frozen."""
        errors = np.asarray(errors, dtype=float)
        if self.best is None:
            self.best = errors.copy()
            self.wait = np.zeros(errors.shape, dtype=int)
            self.frozen = np.zeros(errors.shape, dtype=bool)
            self.frozen_at = np.full(errors.shape, -1, dtype=int)
            return np.zeros(errors.shape, dtype=bool)
        if errors.shape != self.best.shape:
            raise InputError(f"got {errors.shape} errors after {self.best.shape}: same channels")
        improved = errors < self.best - self.min_delta
        active = ~self.frozen
        self.best = np.where(improved & active, errors, self.best)
        self.wait = np.where(active, np.where(improved, 0, self.wait + 1), self.wait)
        new = active & (self.wait >= self.patience)
        self.frozen |= new
        self.frozen_at[new] = epoch
        return new

    @property
    def all_frozen(self) -> bool:
        return self.frozen is not None and bool(self.frozen.all())

    def state_dict(self) -> dict[str, Any]:
        if self.best is None:
            return {}
        return {
            "best": torch.from_numpy(self.best),
            "wait": torch.from_numpy(self.wait),
            "frozen": torch.from_numpy(self.frozen),
            "frozen_at": torch.from_numpy(self.frozen_at),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            for key in ("best", "wait", "frozen", "frozen_at"):
                setattr(self, key, state[key].numpy().copy())


class ChannelEarlyStopping(Callback):
    """CW-DeepNNK as a training callback (see the module docstring).

    Args:
        layer: layer whose per-channel features are measured (output (N, C, ...)).
        images, labels: fixed subset of training points (no validation data).
        patience, min_delta: see :class:`ChannelStoppingRule`.
        k, kernel: NNK classifier settings.
        param_layer: module whose output channel c is frozen with channel c (default ``layer``;
            must have a ``weight`` with C rows); None-like ``""`` measures only.
        device: where the feature passes and the NNK solves run.

    Attributes:
        errors: list of (C,) LOO error vectors, one per epoch seen; epochs: those epochs;
        stop_epoch: the epoch at which every channel was frozen (None while training goes on).
    """

    def __init__(
        self,
        layer: str,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        patience: int = 2,
        min_delta: float = 0.0,
        k: int = 15,
        kernel: str = "cosine",
        param_layer: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.layer = layer
        self.images, self.labels = images, labels
        self.rule = ChannelStoppingRule(patience, min_delta)
        self.k, self.kernel, self.device = k, kernel, device
        self.param_layer = layer if param_layer is None else param_layer
        self.errors: list[np.ndarray] = []
        self.epochs: list[int] = []
        self.stop_epoch: int | None = None
        self._snapshot: dict[str, torch.Tensor] = {}

    def _params(self, model: nn.Module) -> dict[str, torch.Tensor]:
        if not self.param_layer:
            return {}
        try:
            mod = weight_module(resolve_modules(model, [self.param_layer])[self.param_layer])
        except InputError:
            mod = None
        if mod is None:
            raise InputError(
                f"param_layer {self.param_layer!r} is not a layer with weights of this model: "
                f"use one of {weighted_layers(model)}"
            )
        return {
            n: p
            for n, p in (("weight", mod.weight), ("bias", getattr(mod, "bias", None)))
            if isinstance(p, torch.Tensor)
        }

    def update(self, epoch: int, model: nn.Module) -> bool:
        """Measure the channel errors after ``epoch``; freeze channels; True when all frozen."""
        err = channel_loo_errors(
            model, self.images, self.labels, self.layer, k=self.k, kernel=self.kernel,
            device=self.device,
        )  # fmt: skip
        self.errors.append(err)
        self.epochs.append(epoch)
        new = self.rule.update(epoch, err)
        params = self._params(model)
        for name, p in params.items():
            if p.shape[0] != err.shape[0]:
                raise InputError(
                    f"{self.param_layer}.{name} has {p.shape[0]} rows but {self.layer} has "
                    f"{err.shape[0]} channels: pass the param_layer that produces those channels"
                )
            snap = self._snapshot.setdefault(name, p.detach().clone())
            snap[torch.from_numpy(new)] = p.detach()[torch.from_numpy(new)]
        if self.rule.all_frozen and self.stop_epoch is None:
            self.stop_epoch = epoch
        return self.rule.all_frozen

    @torch.no_grad()
    def _restore(self, model: nn.Module) -> None:
        if self.rule.frozen is None or not self.rule.frozen.any():
            return
        mask = torch.from_numpy(self.rule.frozen)
        for name, p in self._params(model).items():
            p[mask] = self._snapshot[name].to(p.device)[mask]

    def on_batch_end(self, step: int, model: nn.Module, optimizer: Any, loss: float) -> None:
        self._restore(model)

    def on_epoch_end(self, epoch: int, model: nn.Module, record: dict) -> None:
        self.update(epoch, model)
        record["channel_loo_error"] = [float(e) for e in self.errors[-1]]
        record["channels_frozen"] = int(self.rule.frozen.sum())

    def state_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.state_dict(),
            "errors": [torch.from_numpy(e) for e in self.errors],
            "epochs": list(self.epochs),
            "stop_epoch": self.stop_epoch,
            "snapshot": dict(self._snapshot),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state.get("rule", {}))
        self.errors = [e.numpy().copy() for e in state.get("errors", [])]
        self.epochs = list(state.get("epochs", []))
        self.stop_epoch = state.get("stop_epoch")
        self._snapshot = {k: v.clone() for k, v in state.get("snapshot", {}).items()}


@dataclass
class ChannelStoppingResult:
    """Outcome of :func:`train_with_channel_stopping`: ``stop_epoch`` (last epoch trained),
    ``stopped`` (True if all channels froze before ``epochs``), the callback and the fit result."""

    stop_epoch: int
    stopped: bool
    callback: ChannelEarlyStopping
    fit_result: FitResult
    frozen_at: list[int] = field(default_factory=list)


def train_with_channel_stopping(
    model: nn.Module,
    train: Any,
    callback: ChannelEarlyStopping,
    *,
    epochs: int,
    out_dir: str | os.PathLike,
    val: Any = None,
    **fit_kwargs: Any,
) -> ChannelStoppingResult:
    """Train with :func:`leafscope.training.fit` one epoch at a time until all channels freeze.

    Args:
        model: trained in place. train / val / fit_kwargs: passed to ``fit``.
        callback: the :class:`ChannelEarlyStopping` (checkpointed with the run).
        epochs: at most this many epochs.
        out_dir: run folder (needed to resume between epochs; overwritten at the start).

    Returns:
        :class:`ChannelStoppingResult`.
    """
    fit_kwargs.setdefault("progress", False)
    result: FitResult | None = None
    for epoch in range(1, epochs + 1):
        result = fit(
            model, train, val, epochs=epoch, out_dir=out_dir, resume=epoch > 1,
            overwrite=epoch == 1, callbacks=[callback], **fit_kwargs,
        )  # fmt: skip
        if callback.rule.all_frozen:
            break
    if result is None:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    return ChannelStoppingResult(
        stop_epoch=callback.epochs[-1],
        stopped=callback.rule.all_frozen,
        callback=callback,
        fit_result=result,
        frozen_at=[int(e) for e in callback.rule.frozen_at],
    )


def validation_stopping_epoch(val_accuracy: list[float], patience: int) -> tuple[int, int]:
    """Validation-based early stopping on per-epoch accuracies (epochs numbered from 1).

    Returns:
        ``(stop_epoch, best_epoch)``: training stops after ``patience`` epochs without a new best
        (or at the last epoch); the best epoch's weights are the ones kept.
    """
    best, best_epoch = -np.inf, 0
    for epoch, acc in enumerate(val_accuracy, start=1):
        if acc > best:
            best, best_epoch = acc, epoch
        elif epoch - best_epoch >= patience:
            return epoch, best_epoch
    return len(val_accuracy), best_epoch


def compare_early_stopping(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    out_dir: str | os.PathLike,
    *,
    model: str | nn.Module = "lenet",
    layer: str = "conv2",
    points: int | Sequence[int] = 1000,
    epochs: int = 6,
    patience: int = 2,
    k: int = 15,
    seed: int = 0,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """CW-DeepNNK (no validation data) against validation-based early stopping, same init.

    Args:
        train, val, test: ``(images, labels)``.
        points: the training points CW-DeepNNK measures: the first N (an int), or their
            indices into ``train``.
        out_dir: two runs are written to ``out_dir/val`` and ``out_dir/cw``.
        model: a zoo name, built for the data's point shape and class count with
            :func:`leafscope.models.build_model_for_input` after ``torch.manual_seed(seed)``,
            or a module (trained in place: its weights on entry are the initial weights of both
            runs); layer: the channel layer.
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
    chosen = list(range(points)) if isinstance(points, int) else [int(i) for i in points]
    cb = ChannelEarlyStopping(
        layer, train[0][chosen], train[1][chosen], patience=patience, k=k, device=device
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
