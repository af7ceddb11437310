"""The training loop: seeded, checkpointed, resumable.

:class:`FitConfig` holds the settings (checked in :meth:`FitConfig.validate`); :func:`fit` builds
one from its keyword arguments (or takes ``config=``) and runs small steps: optimizer and
schedule, resume-or-start, one epoch of batches, the end-of-epoch record and checkpoint.
Data: tensors, image sets, torch Datasets (mini-batches in a seeded order) or a PyTorch
Geometric graph (one full-batch step per epoch). Loss: :mod:`leafscope.training.losses`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from leafscope.errors import InputError
from leafscope.io import write_json
from leafscope.training.augment import Augmentation, RandomRotation, describe
from leafscope.training.callbacks import Callback
from leafscope.training.checkpoint import list_checkpoints
from leafscope.training.data import GraphBatch, GraphSource, make_source
from leafscope.training.losses import LossFn, LossOutput, as_loss_output, cross_entropy_loss
from leafscope.training.runstate import restore_run_state, save_run_state


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        history: per-epoch dicts ``epoch, train_loss, train_accuracy, val_loss, val_accuracy,
            lr, seconds, step`` (losses: mean loss in nats, cross-entropy by default;
            accuracies in [0, 1], None when the loss gives no logits).
        checkpoints: checkpoint files of the run, oldest first.
        stopped_reason: ``"epochs"`` or ``"target_val_accuracy"``.
        steps: optimizer steps taken in total.
        out_dir: the run folder, if any.
    """

    history: list[dict]
    checkpoints: list[Path] = field(default_factory=list)
    stopped_reason: str = "epochs"
    steps: int = 0
    out_dir: Path | None = None


@dataclass
class FitConfig:
    """Settings of one :func:`fit` run.

    Attributes:
        epochs: last epoch to train (a resumed run continues up to it).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``; ``weight_decay`` is L2.
        lr: learning rate; multiplied by ``lr_gamma`` every ``lr_step`` epochs if ``lr_step``.
        batch_size: samples per step; the order is a seeded permutation per epoch (graphs:
            ignored, one full-batch step per epoch).
        seed: seeds the batch order (per epoch), the augmentations (per batch) and torch's
            global RNG (dropout, negative sampling).
        device: where to train; tensor data stays where it is and moves per batch.
        out_dir: run folder for ``epoch_NNNN.pt`` (0 = initial weights), ``step_NNNNNNNN.pt``
            and ``metrics.json``; None writes nothing.
        checkpoint_every_steps: also checkpoint every K optimizer steps.
        target_val_accuracy: stop after the first epoch whose val accuracy reaches this value.
        resume: continue from the newest checkpoint in ``out_dir`` (same settings required);
            the final weights equal those of an uninterrupted run.
        progress: show a tqdm bar per epoch (stderr).
        max_steps_per_epoch: cap on steps per epoch (quick runs).
        meta: JSON-able description of the data etc., written to ``metrics.json``.
        overwrite: delete existing checkpoints in ``out_dir`` instead of refusing to start.
        augment_rotation: rotate every training image by a uniform random angle in
            [−augment_rotation, augment_rotation] degrees; 0 = off. Applied before ``augment``.
        augment: augmentations ``augment(x, generator) -> x`` applied in order to each training
            batch of images (N, C, H, W) with a generator seeded from (seed, epoch, batch), so
            resuming is exact (see :mod:`leafscope.training.augment`).
        loss_fn: ``loss_fn(model, batch) -> LossOutput`` (or a scalar tensor); None =
            :func:`~leafscope.training.losses.cross_entropy_loss`. Also used for validation.
    """

    epochs: int
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 64
    lr_step: int | None = None
    lr_gamma: float = 0.1
    seed: int = 0
    device: str | torch.device = "cpu"
    out_dir: str | os.PathLike | None = None
    checkpoint_every_steps: int | None = None
    target_val_accuracy: float | None = None
    resume: bool = False
    progress: bool = True
    max_steps_per_epoch: int | None = None
    meta: dict | None = None
    overwrite: bool = False
    augment_rotation: float = 0.0
    augment: Sequence[Augmentation] = ()
    loss_fn: LossFn | None = None

    def validate(self) -> None:
        """Raise InputError naming the first bad setting."""
        for key in ("epochs", "batch_size", "lr_step", "checkpoint_every_steps",
                    "max_steps_per_epoch"):  # fmt: skip
            v = getattr(self, key)
            if (v is not None or key in ("epochs", "batch_size")) and (
                isinstance(v, bool) or not isinstance(v, int) or v < 1
            ):
                raise InputError(f"{key} must be an integer >= 1 (got {v!r})")
        lr, target = self.lr, self.target_val_accuracy
        checks = [
            (self.optimizer in ("sgd", "adam"),
             f"unknown optimizer {self.optimizer!r}: use sgd or adam"),
            (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0,
             f"learning rate must be a positive number (got {lr!r})"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1) (got {self.momentum!r})"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay!r})"),
            (0 < self.lr_gamma <= 1, f"lr_gamma must be in (0, 1] (got {self.lr_gamma!r})"),
            (0 <= self.augment_rotation <= 180,
             f"augment_rotation must be in [0, 180] degrees (got {self.augment_rotation!r})"),
            (target is None or 0 < target <= 1,
             f"target_val_accuracy must be in (0, 1] (got {target!r})"),
            (all(callable(a) for a in self.augment),
             "augment must be a sequence of callables augment(x, generator) -> x"),
            (self.loss_fn is None or callable(self.loss_fn),
             "loss_fn must be a callable loss_fn(model, batch) -> (loss, logits, targets)"),
            (not self.resume or self.out_dir is not None,
             "resume=True needs out_dir (the folder of the interrupted run)"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def augmentations(self) -> list[Augmentation]:
        """The per-batch pipeline: the rotation (if any) first, then ``augment``."""
        rot = [RandomRotation(self.augment_rotation)] if self.augment_rotation else []
        return rot + list(self.augment)

    def settings(self) -> dict[str, Any]:
        """The JSON-able settings saved in every checkpoint and in ``metrics.json``."""
        keys = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "lr_step",
                "lr_gamma", "seed", "max_steps_per_epoch", "epochs", "target_val_accuracy",
                "checkpoint_every_steps", "augment_rotation")  # fmt: skip
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out["augment"] = describe(self.augment)
        out["loss"] = describe([self.loss_fn])[0] if self.loss_fn is not None else "cross_entropy"
        return out


def _accuracy_counts(out: LossOutput) -> tuple[int, int]:
    """(correct, scored) of a loss output; (0, 0) without logits and targets."""
    if out.logits is None or out.targets is None:
        return 0, 0
    logits = out.logits.detach()
    pred = logits.argmax(1) if logits.ndim == 2 else (logits > 0).to(out.targets.dtype)
    return int((pred == out.targets).sum()), len(out.targets)


def _weight(out: LossOutput) -> int:
    return len(out.targets) if out.targets is not None else 1


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, GraphBatch):
        return batch.to(device)
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    loss_fn: LossFn | None = None,
) -> tuple[float, float | None]:
    """Mean loss (nats; cross-entropy by default) and accuracy in [0, 1] of ``model`` on ``data``.

    ``data`` is anything :func:`fit` accepts for ``val`` (a graph is scored on its
    ``val_mask``; pass ``GraphBatch(data, data.test_mask)`` for another mask). Eval mode; the
    model's train/eval mode is restored. The accuracy is None when ``loss_fn`` gives no logits.
    """
    source = make_source(data, "data", graph_mask="val_mask")
    fn = loss_fn or cross_entropy_loss
    was_training = model.training
    model.eval()
    loss_sum, weight, correct, scored = 0.0, 0, 0, 0
    for start in range(0, len(source), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(source)))
        out = as_loss_output(fn(model, _to_device(source.batch(idx), torch.device(device))))
        if fn is cross_entropy_loss:  # summed per batch: the exact value of earlier releases
            loss_sum += F.cross_entropy(out.logits, out.targets, reduction="sum").item()
        else:
            loss_sum += out.loss.item() * _weight(out)
        weight += _weight(out)
        c, s = _accuracy_counts(out)
        correct, scored = correct + c, scored + s
    model.train(was_training)
    return loss_sum / weight, (correct / scored if scored else None)


def _check_model(model: nn.Module, source: Any, device: torch.device) -> None:
    """For the default loss: the model maps inputs to logits (N, C) covering every label."""
    if isinstance(source, GraphSource):
        g = source.graph.to(device)
        x, n, top = (g.data.x, g.data.edge_index), g.data.num_nodes, int(g.labels().max())
    else:
        x, y = source.batch(torch.arange(min(2, len(source))))
        x, n = (x.to(device),), len(x)
        top = int(source.y.max()) if source.dataset is None else int(y.max())
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(*x)
    model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"model must map a batch of N inputs to logits (N, C); got {shape}")
    if top >= out.shape[1]:
        raise InputError(
            f"labels go up to {top} but the model has {out.shape[1]} outputs: "
            f"build it with num_classes >= {top + 1}"
        )


def _run_files(out_dir: Path) -> list[Path]:
    return [p for p in out_dir.glob("*.pt") if p.name.startswith(("epoch_", "step_"))]


class _Run:
    """Everything one :func:`fit` call works on (model, optimizer, data, progress, files)."""

    def __init__(self, model: nn.Module, train: Any, val: Any, cfg: FitConfig, callbacks) -> None:
        self.cfg, self.model, self.callbacks = cfg, model, list(callbacks)
        self.settings = cfg.settings()
        self.device = torch.device(cfg.device)
        self.loss_fn = cfg.loss_fn or cross_entropy_loss
        self.augs = cfg.augmentations()
        custom = cfg.loss_fn is not None
        self.train = make_source(train, "train", graph_mask="train_mask", mask_required=not custom)
        self.val = make_source(val, "val", graph_mask="val_mask") if val is not None else None
        if self.augs and isinstance(self.train, GraphSource):
            raise InputError("augment / augment_rotation need image batches, not a graph")
        model.to(self.device)
        if not custom:
            _check_model(model, self.train, self.device)
        self.opt, self.sched = _setup_optimizer(model, cfg)
        self.dir = Path(cfg.out_dir) if cfg.out_dir is not None else None
        self.state: dict[str, Any] = {
            "epoch": 0, "step": 0, "batch_in_epoch": 0, "loss_sum": 0.0, "correct": 0,
            "count": 0, "scored": 0, "epoch_seconds": 0.0, "stopped_reason": None,
            "initial": None,
        }  # fmt: skip
        self.history: list[dict] = []
        self.written: list[Path] = []
        self.tick = time.perf_counter()

    def save(self, name: str) -> None:
        """Checkpoint the full run state as ``out_dir/name`` (nothing without out_dir)."""
        if self.dir is not None:
            path = save_run_state(
                self.dir / name, self.model, self.opt, self.sched, self.callbacks,
                self.settings, self.state, self.history,
            )  # fmt: skip
            self.written.append(path)

    def evaluate_val(self) -> tuple[float | None, float | None]:
        if self.val is None:
            return None, None
        return evaluate(self.model, self.val, device=self.device, loss_fn=self.cfg.loss_fn)

    def write_metrics(self) -> None:
        """Write ``metrics.json`` (settings, data sizes, history, checkpoints)."""
        if self.dir is None:
            return
        write_json(
            self.dir / "metrics.json",
            {
                "model": getattr(self.model, "config", None),
                "settings": self.settings,
                "device": str(self.device),
                "train_size": len(self.train),
                "val_size": len(self.val) if self.val is not None else 0,
                "meta": self.cfg.meta or {},
                "initial": self.state["initial"],
                "history": self.history,
                "steps": self.state["step"],
                "stopped_reason": self.state["stopped_reason"],
                "checkpoints": [p.name for p in self.written],
            },
        )


def _setup_optimizer(model: nn.Module, cfg: FitConfig) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer over the trainable parameters and the optional StepLR schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the model has no trainable parameter (all have requires_grad=False)")
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, cfg.lr_gamma) if cfg.lr_step else None
    return opt, sched


def _start_or_resume(r: _Run) -> None:
    """Seed, call ``on_train_begin``, then restore the newest checkpoint or start afresh."""
    torch.manual_seed(r.cfg.seed)
    for cb in r.callbacks:
        cb.on_train_begin(r.model, r.opt)
    existing = _run_files(r.dir) if r.dir is not None and r.dir.is_dir() else []
    if r.cfg.resume and existing:
        infos = list_checkpoints(r.dir)
        r.written = [i.path for i in infos]
        r.history = restore_run_state(
            infos[-1].path, r.model, r.opt, r.sched, r.callbacks, r.settings, r.state
        )
        return
    if existing and not r.cfg.overwrite:
        raise InputError(
            f"{r.dir} already holds checkpoints ({len(existing)} files): pass `resume` to "
            "continue that run, `overwrite` to replace it, or another output folder"
        )
    for path in existing:
        path.unlink()
    if r.val is not None:
        v_loss, v_acc = r.evaluate_val()
        r.model.train()
        r.state["initial"] = {"val_loss": v_loss, "val_accuracy": v_acc}
    r.save("epoch_0000.pt")


def _train_step(r: _Run, batch: Any, epoch: int, b: int) -> float:
    """One optimizer step on ``batch`` (augmented, seeded per batch); returns the loss."""
    cfg, state = r.cfg, r.state
    batch = _to_device(batch, r.device)
    if r.augs:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 10_007 + b)
        x, y = batch
        for aug in r.augs:
            x = aug(x, g)
        batch = (x, y)
    r.opt.zero_grad(set_to_none=True)
    out = as_loss_output(r.loss_fn(r.model, batch))
    loss_value = out.loss.item()
    if not math.isfinite(loss_value):
        raise InputError(
            f"training diverged: loss {loss_value} at step {state['step'] + 1}; "
            f"lower the learning rate (got {cfg.lr}) or check the inputs for NaN"
        )
    out.loss.backward()
    r.opt.step()
    correct, scored = _accuracy_counts(out)
    state["step"] += 1
    state["batch_in_epoch"] = b + 1
    state["loss_sum"] += loss_value * _weight(out)
    state["correct"] += correct
    state["scored"] += scored
    state["count"] += _weight(out)
    for cb in r.callbacks:
        cb.on_batch_end(state["step"], r.model, r.opt, loss_value)
    every = cfg.checkpoint_every_steps
    if r.dir is not None and every and state["step"] % every == 0:
        state["epoch_seconds"] += time.perf_counter() - r.tick
        r.tick = time.perf_counter()
        r.save(f"step_{state['step']:08d}.pt")
    return loss_value


def _train_epoch(r: _Run, epoch: int, n_batches: int) -> None:
    """The batches of ``epoch`` not done yet, in the epoch's seeded order."""
    cfg = r.cfg
    generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    perm = torch.randperm(len(r.train), generator=generator)
    bar = tqdm(
        total=n_batches,
        initial=r.state["batch_in_epoch"],
        disable=not cfg.progress,
        desc=f"epoch {epoch}/{cfg.epochs}",
        leave=False,
        dynamic_ncols=True,
    )
    for b in range(r.state["batch_in_epoch"], n_batches):
        batch = r.train.batch(perm[b * cfg.batch_size : (b + 1) * cfg.batch_size])
        loss_value = _train_step(r, batch, epoch, b)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
    bar.close()


def _end_epoch(r: _Run, epoch: int, lr_now: float) -> str | None:
    """Schedule step, validation, the epoch's record, callbacks, checkpoint; the stop reason."""
    state, cfg = r.state, r.cfg
    if r.sched is not None:
        r.sched.step()
    count = max(state["count"], 1)
    record = {
        "epoch": epoch,
        "step": state["step"],
        "train_loss": state["loss_sum"] / count,
        "train_accuracy": state["correct"] / state["scored"] if state["scored"] else None,
        "val_loss": None,
        "val_accuracy": None,
        "lr": lr_now,
    }
    record["val_loss"], record["val_accuracy"] = r.evaluate_val()
    record["seconds"] = state["epoch_seconds"] + time.perf_counter() - r.tick
    r.history.append(record)
    state.update(epoch=epoch, batch_in_epoch=0, loss_sum=0.0, correct=0, count=0, scored=0,
                 epoch_seconds=0.0)  # fmt: skip
    for cb in r.callbacks:
        cb.on_epoch_end(epoch, r.model, record)
    reason = None
    target, acc = cfg.target_val_accuracy, record["val_accuracy"]
    if target is not None and acc is not None and acc >= target:
        reason = "target_val_accuracy"
    elif epoch == cfg.epochs:
        reason = "epochs"
    state["stopped_reason"] = reason
    r.save(f"epoch_{epoch:04d}.pt")
    r.write_metrics()
    return reason


FIT_FIELDS = tuple(f.name for f in dataclasses.fields(FitConfig))


def fit(
    model: nn.Module,
    train: Any,
    val: Any = None,
    config: FitConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    **settings: Any,
) -> FitResult:
    """Train ``model`` (cross-entropy by default); checkpoint and resume exactly.

    ``fit(model, train, val, epochs=3, lr=0.1, ...)`` and ``fit(model, train, val,
    FitConfig(epochs=3, lr=0.1))`` are the same call; keyword settings override ``config``.

    Args:
        model: maps inputs (N, ...) to logits (N, C) (a graph model: ``model(x, edge_index)``);
            trained in place (only parameters with ``requires_grad``).
        train: ``(inputs, labels)`` tensors, an image set (``.images``/``.labels``), a Dataset,
            or a PyG ``Data`` graph (default loss on its ``train_mask``; one step per epoch).
        val: same forms (a graph is scored on its ``val_mask``), or None (no val metrics).
        config: a :class:`FitConfig`; None builds one from ``settings``.
        callbacks: :class:`Callback` objects; their state is checkpointed.
        **settings: any :class:`FitConfig` field (``epochs`` is required without ``config``).

    Returns:
        A :class:`FitResult`.

    Raises:
        InputError: bad settings, data or model output; training diverged.
        CheckpointError: resume from a run with other settings or another model.
    """
    unknown = sorted(set(settings) - set(FIT_FIELDS))
    if unknown:
        raise InputError(f"unknown fit setting(s) {unknown}: use FitConfig fields {FIT_FIELDS}")
    if config is None:
        if "epochs" not in settings:
            raise InputError("fit needs epochs=N (the last epoch to train) or config=FitConfig")
        config = FitConfig(**settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    config.validate()
    r = _Run(model, train, val, config, callbacks)
    _start_or_resume(r)
    n_batches = math.ceil(len(r.train) / config.batch_size)
    if config.max_steps_per_epoch is not None:
        n_batches = min(n_batches, config.max_steps_per_epoch)
    reached = r.state["stopped_reason"] == "target_val_accuracy"
    reason = r.state["stopped_reason"] if reached else None
    model.train()
    for epoch in range(r.state["epoch"] + 1, config.epochs + 1):
        if reason:
            break
        lr_now = r.opt.param_groups[0]["lr"]
        r.tick = time.perf_counter()
        _train_epoch(r, epoch, n_batches)
        reason = _end_epoch(r, epoch, lr_now)
    reason = reason or r.state["stopped_reason"] or "epochs"
    r.state["stopped_reason"] = reason
    r.write_metrics()
    return FitResult(
        history=r.history,
        checkpoints=list(dict.fromkeys(r.written)),
        stopped_reason=reason,
        steps=r.state["step"],
        out_dir=r.dir,
    )
