"""Training: :func:`fit` (seeded, checkpointed, resumable), callbacks, and checkpoint I/O."""

from __future__ import annotations

from leafscope.training.callbacks import Callback
from leafscope.training.checkpoint import (
    CheckpointInfo,
    checkpoint_val_accuracy,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    select_checkpoint,
)
from leafscope.training.fit import FitResult, evaluate, fit

__all__ = [
    "Callback",
    "CheckpointInfo",
    "FitResult",
    "checkpoint_val_accuracy",
    "evaluate",
    "fit",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "select_checkpoint",
]
