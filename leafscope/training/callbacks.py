"""Training callbacks: hooks called by :func:`leafscope.training.fit`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Callback:
    """Base class; every hook is a no-op. Subclass and override what you need.

    State returned by :meth:`state_dict` is saved in each checkpoint and handed back to
    :meth:`load_state_dict` on resume; keep it to tensors and plain Python values.
    """

    def on_train_begin(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called once before the first step (also after a resume)."""

    def on_batch_end(
        self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, loss: float
    ) -> None:
        """Called right after ``optimizer.step()``; ``step`` counts steps from 1."""

    def on_epoch_end(self, epoch: int, model: nn.Module, record: dict) -> None:
        """Called after validation at the end of epoch ``epoch`` (from 1) with its metrics."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (tensors and plain values only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
