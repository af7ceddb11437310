"""Checkpoint I/O of training runs: the readers and writers live in the model layer
(:mod:`leafscope.models.checkpoint`, which the one model loader uses); re-exported here."""

from leafscope.models.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointInfo,
    checkpoint_val_accuracy,
    list_checkpoints,
    load_checkpoint,
    load_torch_file,
    read_checkpoint,
    save_checkpoint,
    select_checkpoint,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointInfo",
    "checkpoint_val_accuracy",
    "list_checkpoints",
    "load_checkpoint",
    "load_torch_file",
    "read_checkpoint",
    "save_checkpoint",
    "select_checkpoint",
]
