"""Saving and restoring the full state of a training run (for exact resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from leafscope.errors import CheckpointError
from leafscope.training.callbacks import Callback
from leafscope.training.checkpoint import read_checkpoint, save_checkpoint

# Settings that must not change between an interrupted run and its resume.
RESUME_KEYS = (
    "optimizer",
    "augment_rotation",
    "augment",
    "loss",
    "lr",
    "momentum",
    "weight_decay",
    "batch_size",
    "lr_step",
    "lr_gamma",
    "seed",
    "max_steps_per_epoch",
)
# Loop progress stored in every checkpoint (``extra``) besides epoch and step.
PROGRESS_KEYS = (
    "batch_in_epoch",
    "loss_sum",
    "correct",
    "count",
    "scored",
    "epoch_seconds",
    "stopped_reason",
    "initial",
)


def save_run_state(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    callbacks: list[Callback],
    settings: dict,
    state: dict,
    history: list[dict],
) -> Path:
    """Checkpoint everything needed to continue the run exactly (RNG, callbacks, progress)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    val_acc = None
    if state["batch_in_epoch"] == 0:
        val_acc = (
            history[-1]["val_accuracy"] if history else (state["initial"] or {}).get("val_accuracy")
        )
    extra = {
        "settings": settings,
        "rng": rng,
        "callbacks": [cb.state_dict() for cb in callbacks],
        "val_accuracy": val_acc,
        **{k: state[k] for k in PROGRESS_KEYS},
    }
    return save_checkpoint(
        path,
        model=model,
        optimizer=opt,
        scheduler=sched,
        epoch=state["epoch"],
        step=state["step"],
        history=history,
        extra=extra,
    )


def restore_run_state(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    callbacks: list[Callback],
    settings: dict,
    state: dict,
) -> list[dict]:
    """Load a run checkpoint into model, optimizer, scheduler, callbacks, RNG and ``state``;
    return the history. Raises CheckpointError when the model or key settings differ."""
    data = read_checkpoint(path)
    extra = data["extra"]
    config = getattr(model, "config", None)
    if config is not None and data["config"] is not None and dict(config) != data["config"]:
        raise CheckpointError(
            f"{path} holds model {data['config']} but fit got {dict(config)}: resume with the "
            "same model or use another out_dir"
        )
    old = extra.get("settings", {})
    for key in RESUME_KEYS:
        if key in old and old[key] != settings[key]:
            raise CheckpointError(
                f"cannot resume from {path}: {key} was {old[key]!r}, now {settings[key]!r}; "
                "resume with the same settings or use another out_dir"
            )
    if len(extra.get("callbacks", [])) != len(callbacks):
        raise CheckpointError(
            f"{path} holds state for {len(extra.get('callbacks', []))} callbacks but fit got "
            f"{len(callbacks)}: pass the same callbacks when resuming"
        )
    model.load_state_dict(data["model_state"])
    opt.load_state_dict(data["optimizer_state"])
    if sched is not None and data["scheduler_state"] is not None:
        sched.load_state_dict(data["scheduler_state"])
    for cb, cb_state in zip(callbacks, extra["callbacks"], strict=True):
        cb.load_state_dict(cb_state)
    torch.set_rng_state(extra["rng"]["torch"])
    if "cuda" in extra["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(extra["rng"]["cuda"])
    progress = {k: extra[k] for k in PROGRESS_KEYS if k in extra}
    progress.setdefault("scored", extra["count"])  # runs before "scored": every sample scored
    state.update(epoch=data["epoch"], step=data["step"], **progress)
    return list(data["history"])
