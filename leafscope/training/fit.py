"""The training loop: seeded, checkpointed, resumable."""

from __future__ import annotations

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

from leafscope.data.transforms import random_rotation
from leafscope.errors import InputError
from leafscope.io import write_json
from leafscope.training.callbacks import Callback
from leafscope.training.checkpoint import list_checkpoints
from leafscope.training.data import BatchSource
from leafscope.training.runstate import restore_run_state, save_run_state


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        history: per-epoch dicts ``epoch, train_loss, train_accuracy, val_loss, val_accuracy,
            lr, seconds, step`` (losses: mean cross-entropy in nats; accuracies in [0, 1]).
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


@torch.no_grad()
def evaluate(
    model: nn.Module, data: Any, *, batch_size: int = 1000, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy in [0, 1] of ``model`` on ``data`` (eval mode).

    ``data`` is anything :func:`fit` accepts for ``val``. The model's train/eval mode is restored.
    """
    source = data if isinstance(data, BatchSource) else BatchSource(data, "data")
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(source), batch_size):
        x, y = source.batch(torch.arange(start, min(start + batch_size, len(source))))
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    model.train(was_training)
    return loss_sum / len(source), correct / len(source)


def _check_settings(s: dict) -> None:
    """Raise InputError naming the first bad training setting in ``s``."""
    for key in ("epochs", "batch_size", "lr_step", "checkpoint_every_steps", "max_steps_per_epoch"):
        v = s[key]
        if (v is not None or key in ("epochs", "batch_size")) and (
            isinstance(v, bool) or not isinstance(v, int) or v < 1
        ):
            raise InputError(f"{key} must be an integer >= 1 (got {v!r})")
    lr, target = s["lr"], s["target_val_accuracy"]
    checks = [
        (
            s["optimizer"] in ("sgd", "adam"),
            f"unknown optimizer {s['optimizer']!r}: use sgd or adam",
        ),
        (
            isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0,
            f"learning rate must be a positive number (got {lr!r})",
        ),
        (0 <= s["momentum"] < 1, f"momentum must be in [0, 1) (got {s['momentum']!r})"),
        (s["weight_decay"] >= 0, f"weight_decay must be >= 0 (got {s['weight_decay']!r})"),
        (0 < s["lr_gamma"] <= 1, f"lr_gamma must be in (0, 1] (got {s['lr_gamma']!r})"),
        (
            0 <= s["augment_rotation"] <= 180,
            f"augment_rotation must be in [0, 180] degrees (got {s['augment_rotation']!r})",
        ),
        (
            target is None or 0 < target <= 1,
            f"target_val_accuracy must be in (0, 1] (got {target!r})",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def _check_model(model: nn.Module, source: BatchSource, device: torch.device) -> None:
    x, y = source.batch(torch.arange(min(2, len(source))))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x.to(device))
    model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(x):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"model must map a batch of N inputs to logits (N, C); got {shape}")
    top = int(source.y.max()) if source.dataset is None else int(y.max())
    if top >= out.shape[1]:
        raise InputError(
            f"labels go up to {top} but the model has {out.shape[1]} outputs: "
            f"build it with num_classes >= {top + 1}"
        )


def _run_files(out_dir: Path) -> list[Path]:
    return [p for p in out_dir.glob("*.pt") if p.name.startswith(("epoch_", "step_"))]


def fit(
    model: nn.Module,
    train: Any,
    val: Any = None,
    *,
    epochs: int,
    optimizer: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    lr_step: int | None = None,
    lr_gamma: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    out_dir: str | os.PathLike | None = None,
    checkpoint_every_steps: int | None = None,
    target_val_accuracy: float | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    max_steps_per_epoch: int | None = None,
    meta: dict | None = None,
    overwrite: bool = False,
    augment_rotation: float = 0.0,
) -> FitResult:
    """Train a classifier with cross-entropy; checkpoint and resume exactly.

    Args:
        model: maps inputs (N, ...) to logits (N, C); trained in place.
        train: ``(inputs, labels)`` tensors, an image set (``.images``/``.labels``) or a Dataset.
        val: same forms, or None (then no validation metrics).
        epochs: last epoch to train (a resumed run continues up to it).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``; ``weight_decay`` is L2.
        lr: learning rate; multiplied by ``lr_gamma`` every ``lr_step`` epochs if ``lr_step``.
        batch_size: samples per step; the order is a seeded permutation per epoch.
        seed: seeds the batch order (per epoch) and torch's RNG (dropout).
        device: where to train; the data stays where it is and moves per batch.
        out_dir: run folder for ``epoch_NNNN.pt`` (0 = initial weights), ``step_NNNNNNNN.pt`` and
            ``metrics.json``; None writes nothing.
        checkpoint_every_steps: also checkpoint every K optimizer steps.
        target_val_accuracy: stop after the first epoch whose val accuracy reaches this value.
        resume: continue from the newest checkpoint in ``out_dir`` (same settings required);
            the final weights equal those of an uninterrupted run.
        callbacks: :class:`Callback` objects; their state is checkpointed.
        progress: show a tqdm bar per epoch (stderr).
        max_steps_per_epoch: cap on steps per epoch (quick runs).
        meta: JSON-able description of the data etc., written to ``metrics.json``.
        overwrite: delete existing checkpoints in ``out_dir`` instead of refusing to start.
        augment_rotation: rotate every training image by a uniform random angle in
            [−augment_rotation, augment_rotation] degrees (seeded per batch, so resuming is
            exact); 0 = no augmentation. Needs (N, C, H, W) inputs.

    Returns:
        A :class:`FitResult`.

    Raises:
        InputError: bad settings, data or model output; training diverged.
        CheckpointError: resume from a run with other settings or another model.
    """
    settings = {
        "optimizer": optimizer,
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "lr_step": lr_step,
        "lr_gamma": lr_gamma,
        "seed": seed,
        "max_steps_per_epoch": max_steps_per_epoch,
        "epochs": epochs,
        "target_val_accuracy": target_val_accuracy,
        "checkpoint_every_steps": checkpoint_every_steps,
        "augment_rotation": augment_rotation,
    }
    _check_settings(settings)
    device = torch.device(device)
    callbacks = list(callbacks)
    train_src = BatchSource(train, "train")
    val_src = BatchSource(val, "val") if val is not None else None
    model.to(device)
    _check_model(model, train_src, device)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, lr_step, lr_gamma) if lr_step else None

    run = Path(out_dir) if out_dir is not None else None
    if resume and run is None:
        raise InputError("resume=True needs out_dir (the folder of the interrupted run)")
    torch.manual_seed(seed)
    for cb in callbacks:
        cb.on_train_begin(model, opt)
    state = {
        "epoch": 0,
        "step": 0,
        "batch_in_epoch": 0,
        "loss_sum": 0.0,
        "correct": 0,
        "count": 0,
        "epoch_seconds": 0.0,
        "stopped_reason": None,
        "initial": None,
    }
    history: list[dict] = []
    written: list[Path] = []
    existing = _run_files(run) if run is not None and run.is_dir() else []
    if resume and existing:
        infos = list_checkpoints(run)
        written = [i.path for i in infos]
        history = restore_run_state(infos[-1].path, model, opt, sched, callbacks, settings, state)
    elif existing and not overwrite:
        raise InputError(
            f"{run} already holds checkpoints ({len(existing)} files): pass resume=True "
            "(--resume) to continue that run, overwrite=True (--overwrite), or another out_dir"
        )
    else:
        for path in existing:
            path.unlink()
        if val_src is not None:
            v_loss, v_acc = evaluate(model, val_src, device=device)
            model.train()
            state["initial"] = {"val_loss": v_loss, "val_accuracy": v_acc}
        if run is not None:
            written.append(
                save_run_state(
                    run / "epoch_0000.pt", model, opt, sched, callbacks, settings, state, history
                )
            )

    def write_metrics() -> None:
        if run is not None:
            write_json(
                run / "metrics.json",
                {
                    "model": getattr(model, "config", None),
                    "settings": settings,
                    "device": str(device),
                    "train_size": len(train_src),
                    "val_size": len(val_src) if val_src is not None else 0,
                    "meta": meta or {},
                    "initial": state["initial"],
                    "history": history,
                    "steps": state["step"],
                    "stopped_reason": state["stopped_reason"],
                    "checkpoints": [p.name for p in written],
                },
            )

    n_batches = math.ceil(len(train_src) / batch_size)
    if max_steps_per_epoch is not None:
        n_batches = min(n_batches, max_steps_per_epoch)
    reason = state["stopped_reason"] if state["stopped_reason"] == "target_val_accuracy" else None
    model.train()
    for epoch in range(state["epoch"] + 1, epochs + 1):
        if reason:
            break
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(len(train_src), generator=generator)
        lr_now = opt.param_groups[0]["lr"]
        tick = time.perf_counter()
        bar = tqdm(
            total=n_batches,
            initial=state["batch_in_epoch"],
            disable=not progress,
            desc=f"epoch {epoch}/{epochs}",
            leave=False,
            dynamic_ncols=True,
        )
        for b in range(state["batch_in_epoch"], n_batches):
            x, y = train_src.batch(perm[b * batch_size : (b + 1) * batch_size])
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if augment_rotation:
                g = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 10_007 + b)
                x = random_rotation(x, augment_rotation, g)
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise InputError(
                    f"training diverged: loss {loss_value} at step {state['step'] + 1}; "
                    f"lower the learning rate (got {lr}) or check the inputs for NaN"
                )
            loss.backward()
            opt.step()
            state["step"] += 1
            state["batch_in_epoch"] = b + 1
            state["loss_sum"] += loss_value * len(y)
            state["correct"] += int((logits.detach().argmax(1) == y).sum())
            state["count"] += len(y)
            for cb in callbacks:
                cb.on_batch_end(state["step"], model, opt, loss_value)
            if (
                run is not None
                and checkpoint_every_steps
                and state["step"] % checkpoint_every_steps == 0
            ):
                state["epoch_seconds"] += time.perf_counter() - tick
                tick = time.perf_counter()
                path = run / f"step_{state['step']:08d}.pt"
                written.append(
                    save_run_state(path, model, opt, sched, callbacks, settings, state, history)
                )
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
        bar.close()
        if sched is not None:
            sched.step()
        record = {
            "epoch": epoch,
            "step": state["step"],
            "train_loss": state["loss_sum"] / max(state["count"], 1),
            "train_accuracy": state["correct"] / max(state["count"], 1),
            "val_loss": None,
            "val_accuracy": None,
            "lr": lr_now,
        }
        if val_src is not None:
            record["val_loss"], record["val_accuracy"] = evaluate(model, val_src, device=device)
        record["seconds"] = state["epoch_seconds"] + time.perf_counter() - tick
        history.append(record)
        state.update(
            epoch=epoch, batch_in_epoch=0, loss_sum=0.0, correct=0, count=0, epoch_seconds=0.0
        )
        for cb in callbacks:
            cb.on_epoch_end(epoch, model, record)
        if (
            target_val_accuracy is not None
            and record["val_accuracy"] is not None
            and record["val_accuracy"] >= target_val_accuracy
        ):
            reason = "target_val_accuracy"
        elif epoch == epochs:
            reason = "epochs"
        state["stopped_reason"] = reason
        if run is not None:
            written.append(
                save_run_state(
                    run / f"epoch_{epoch:04d}.pt",
                    model,
                    opt,
                    sched,
                    callbacks,
                    settings,
                    state,
                    history,
                )
            )
            write_metrics()
    reason = reason or state["stopped_reason"] or "epochs"
    state["stopped_reason"] = reason
    write_metrics()
    return FitResult(
        history=history,
        checkpoints=list(dict.fromkeys(written)),
        stopped_reason=reason,
        steps=state["step"],
        out_dir=run,
    )
