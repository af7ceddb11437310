"""Training: :func:`fit` (seeded, checkpointed, resumable), its :class:`FitConfig`, losses,
augmentations, callbacks, and checkpoint I/O."""

from __future__ import annotations

from leafscope.training.augment import HorizontalFlip, RandomCrop, RandomRotation, parse_augment
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
from leafscope.training.data import GraphBatch
from leafscope.training.fit import FitConfig, FitResult, evaluate, fit
from leafscope.training.losses import (
    LossOutput,
    cross_entropy_loss,
    link_prediction_loss,
    sample_negative_edges,
)

__all__ = [
    "Callback",
    "CheckpointInfo",
    "FitConfig",
    "FitResult",
    "GraphBatch",
    "HorizontalFlip",
    "LossOutput",
    "RandomCrop",
    "RandomRotation",
    "checkpoint_val_accuracy",
    "cross_entropy_loss",
    "evaluate",
    "fit",
    "link_prediction_loss",
    "list_checkpoints",
    "load_checkpoint",
    "parse_augment",
    "read_checkpoint",
    "sample_negative_edges",
    "save_checkpoint",
    "select_checkpoint",
]
