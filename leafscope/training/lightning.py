"""PyTorch Lightning adapters (optional extra ``leafscope[lightning]``).

leafscope's training hooks (:class:`~leafscope.training.callbacks.Callback`: the temperature
monitor, channel-wise early stopping, ...) run inside :func:`leafscope.training.fit`, inside any
plain loop through their ``on_*`` methods, and inside a Lightning ``Trainer`` through
:class:`LeafscopeCallback`.
:class:`StepCheckpoint` writes leafscope checkpoints every K optimizer steps, the partially trained
models the analyses need.

Examples:
    >>> from leafscope.thermo import TemperatureMonitor
    >>> cb = LeafscopeCallback(TemperatureMonitor())  # doctest: +SKIP
    >>> trainer = lightning.Trainer(callbacks=[cb, StepCheckpoint("runs/x", 50)])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from leafscope.errors import InputError
from leafscope.training.callbacks import Callback as LeafscopeHook
from leafscope.training.checkpoint import save_checkpoint

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "leafscope.training.lightning needs PyTorch Lightning: pip install 'leafscope[lightning]'"
    ) from exc


def _inner_model(pl_module: nn.Module, attribute: str | None) -> nn.Module:
    """The network a hook should see: ``pl_module.<attribute>`` or the LightningModule itself."""
    if attribute is None:
        return pl_module
    inner = getattr(pl_module, attribute, None)
    if not isinstance(inner, nn.Module):
        raise InputError(
            f"{type(pl_module).__name__} has no nn.Module attribute {attribute!r}: pass "
            "model_attribute=None to use the LightningModule itself, or the attribute's name"
        )
    return inner


def _loss_value(outputs: Any) -> float:
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    return float(loss.detach()) if hasattr(loss, "detach") else float("nan")


class LeafscopeCallback(pl.Callback):
    """Run a leafscope training hook inside a Lightning ``Trainer``.

    Args:
        hook: a leafscope callback (``TemperatureMonitor``, ``ChannelEarlyStopping``, ...).
        model_attribute: attribute of the LightningModule holding the network the hook measures
            (``"model"`` is common); None = the LightningModule itself.
        stop_when_frozen: for hooks with a ``rule.all_frozen`` flag (channel-wise early stopping),
            set ``trainer.should_stop`` once every channel is frozen.

    Epochs are counted from 1 as in :func:`leafscope.training.fit`; the hook's ``record`` dict
    is logged (numbers only) after each training epoch, and its state rides in Lightning's
    checkpoints.
    """

    def __init__(
        self, hook: LeafscopeHook, model_attribute: str | None = None, stop_when_frozen: bool = True
    ) -> None:
        if not isinstance(hook, LeafscopeHook):
            raise InputError(
                f"hook must be a leafscope.training.Callback (got {type(hook).__name__})"
            )
        self.hook = hook
        self.model_attribute = model_attribute
        self.stop_when_frozen = stop_when_frozen

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self.hook.on_train_begin(_inner_model(pl_module, self.model_attribute), optimizer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        model = _inner_model(pl_module, self.model_attribute)
        self.hook.on_batch_end(trainer.global_step, model, optimizer, _loss_value(outputs))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record: dict[str, Any] = {"epoch": trainer.current_epoch + 1}
        model = _inner_model(pl_module, self.model_attribute)
        self.hook.on_epoch_end(trainer.current_epoch + 1, model, record)
        numbers = {
            f"leafscope/{k}": float(v)
            for k, v in record.items()
            if isinstance(v, (int, float)) and k != "epoch"
        }
        if numbers:
            pl_module.log_dict(numbers, on_epoch=True)
        rule = getattr(self.hook, "rule", None)
        if self.stop_when_frozen and rule is not None and getattr(rule, "all_frozen", False):
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return self.hook.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.hook.load_state_dict(state_dict)


class StepCheckpoint(pl.Callback):
    """Write a leafscope checkpoint ``step_NNNNNNNN.pt`` every ``every_n_steps`` optimizer steps.

    The files load with ``--model MODULE:CALLABLE --weights FILE`` (or
    :func:`~leafscope.training.load_checkpoint` when the network carries a leafscope ``config``),
    so every leafscope command can measure the partially trained model.

    Args:
        dirpath: folder of the checkpoints (created).
        every_n_steps: K >= 1.
        model_attribute: as in :class:`LeafscopeCallback`.
    """

    def __init__(
        self, dirpath: str | os.PathLike, every_n_steps: int, model_attribute: str | None = None
    ) -> None:
        if type(every_n_steps) is not int or every_n_steps < 1:
            raise InputError(f"every_n_steps must be an integer >= 1 (got {every_n_steps!r})")
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.model_attribute = model_attribute
        self.written: list[Path] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        path = self.dirpath / f"step_{step:08d}.pt"
        if self.written and self.written[-1] == path:
            return
        model = _inner_model(pl_module, self.model_attribute)
        save_checkpoint(path, model=model, epoch=trainer.current_epoch, step=step, history=[])
        self.written.append(path)
