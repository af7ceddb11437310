"""Checkpoints: atomic save, safe load (``torch.load(weights_only=True)``), run listing.

A checkpoint is a dict of tensors and plain Python values only, so loading it never unpickles
arbitrary objects: a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leafscope.errors import CheckpointError, InputError
from leafscope.io import torch_save_atomic

FORMAT = "leafscope-checkpoint"
VERSION = 1
_NAME = re.compile(r"^(epoch|step)_(\d+)\.pt$")
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint of a run.

    Attributes:
        path: the ``.pt`` file.
        epoch: completed epochs when it was written (0 = initial weights).
        step: optimizer steps taken when it was written.
        val_accuracy: validation accuracy in [0, 1] at that point, or None when not measured.
        kind: ``"epoch"`` (end of an epoch) or ``"step"`` (every K steps).
    """

    path: Path
    epoch: int
    step: int
    val_accuracy: float | None
    kind: str


def _check_plain(obj: Any, where: str) -> None:
    """Raise InputError unless ``obj`` holds only tensors and plain Python values."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise InputError(f"checkpoint key {where}[{key!r}] must be str or int")
            _check_plain(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise InputError(
            f"checkpoint value {where} is a {type(obj).__name__}: store only tensors, numbers, "
            "strings, lists and dicts (convert it, e.g. with .tolist() or str())"
        )


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epoch: int,
    step: int,
    history: list[dict],
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (:func:`leafscope.io.torch_save_atomic`: temporary file in
    the same folder, fsync, then ``os.replace``).

    Args:
        path: destination ``.pt`` file; its folder is created.
        model: the model; its ``config`` dict (if any) is stored so it can be rebuilt.
        optimizer: optional optimizer whose state is stored.
        scheduler: optional learning-rate scheduler whose state is stored.
        epoch: completed epochs.
        step: optimizer steps taken.
        history: per-epoch metric dicts so far.
        extra: more plain values / tensors (RNG states, callback states, ...).

    Returns:
        The path written. If writing fails, an older file at ``path`` is left untouched.
    """
    path = Path(path)
    config = getattr(model, "config", None)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": dict(config) if isinstance(config, dict) else None,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "history": list(history),
        "extra": dict(extra or {}),
    }
    _check_plain(payload, "checkpoint")
    return torch_save_atomic(path, payload)


# the first bytes of a torch.save file: a zip archive, or the legacy pickle of torch's magic number
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:-1]


def _not_a_torch_file(path: Path) -> str | None:
    """Why ``path`` is not a torch.save file at all (None when it looks like one)."""
    with open(path, "rb") as handle:
        head = handle.read(len(_LEGACY_MAGIC))
    if not head:
        return "the file is empty"
    if head.startswith(_LEGACY_MAGIC):
        return None
    if not head.startswith(_ZIP_MAGIC):
        return f"it starts with {head[:8]!r}, neither a zip archive nor a legacy torch pickle"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None  # a zip header but no readable directory: a truncated torch file, maybe
    if any(name.endswith("/data.pkl") for name in names):
        return None
    return f"it is a zip archive without the data.pkl of a torch file (holds {names[:3]})"


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, every failure one clear error.

    Args:
        path: a ``.pt`` file.
        what: what the file should be, for the messages (``"checkpoint"``, ``"weights file"``).

    Returns:
        The unpickled tensors and plain values.

    Raises:
        CheckpointError: missing, unreadable, not a torch file, truncated or corrupt, or holding
            objects other than tensors and plain values (refused: they could run code).
    """
    path = Path(path)
    if not path.is_file():
        hint = " (a run folder holds epoch_NNNN.pt files)" if what == "checkpoint" else ""
        raise CheckpointError(f"no {what} at {path}: check the path{hint}")
    try:
        reason = _not_a_torch_file(path)
    except OSError as exc:
        raise CheckpointError(
            f"cannot read {path} ({exc.strerror or exc}): check the file's permissions"
        ) from exc
    if reason is not None:
        raise CheckpointError(
            f"{path} is not a leafscope {what}, nor any torch file ({reason}): pass a .pt "
            "file written by `leafscope train`, leafscope.training.save_checkpoint or torch.save"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"{path} holds objects other than tensors and plain values; refusing to unpickle "
                "them (they could run code): save torch.save(model.state_dict(), path) or use a "
                "checkpoint written by leafscope"
            ) from exc
        detail = str(exc).strip().splitlines()[-1][:120]
        raise CheckpointError(
            f"{path} is a corrupt torch file ({detail}): re-create it or pick another"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path} is not a readable {what} ({type(exc).__name__}: {str(exc)[:120]}): "
            "it may be truncated or not a torch file; re-create it or pick another"
        ) from exc


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict safely (``weights_only=True``, tensors mapped to CPU).

    Returns:
        Dict with keys ``config``, ``model_state``, ``optimizer_state``, ``scheduler_state``,
        ``epoch``, ``step``, ``history``, ``extra``.

    Raises:
        CheckpointError: missing file, not a leafscope checkpoint, corrupt, or unsafe content.
    """
    data = load_torch_file(path, "checkpoint")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a torch file but not a leafscope checkpoint: load it yourself with "
            "torch.load, or write checkpoints with leafscope.training.save_checkpoint"
        )
    return data


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a checkpoint, load its weights, and put it in eval mode.

    The reader of leafscope checkpoint files. To load any model (a run folder's newest
    checkpoint, a TorchScript file, a factory with weights, normalisation and output options),
    use the one loader, :func:`leafscope.models.load_model` or
    :meth:`leafscope.models.ModelSpec.load`, which calls this for leafscope files.

    Args:
        path: a ``.pt`` file written by leafscope.
        device: where to put the model.

    Returns:
        The model in eval mode on ``device``.

    Raises:
        CheckpointError: unreadable file, no or unknown model config, or mismatched weights.
    """
    from leafscope.models import build_model, model_names

    data = read_checkpoint(path)
    config = data.get("config")
    if not isinstance(config, dict) or "name" not in config:
        raise CheckpointError(
            f"{path} stores no model config (the model was not built by leafscope.models): "
            "build the model yourself and load read_checkpoint(path)['model_state'] into it"
        )
    config = dict(config)
    name = config.pop("name")
    if name not in model_names():
        raise CheckpointError(
            f"{path} holds unknown model {name!r}: known models are {', '.join(model_names())}; "
            "upgrade leafscope or rebuild the model yourself"
        )
    try:
        model = build_model(name, **config)
    except InputError as exc:
        raise CheckpointError(f"{path}: cannot rebuild model {name!r} ({exc})") from exc
    try:
        model.load_state_dict(data["model_state"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"weights in {path} do not fit model {name!r} with config {config} "
            f"({str(exc).splitlines()[0][:160]}): the file may be edited or from another version"
        ) from exc
    return model.to(device).eval()


def checkpoint_val_accuracy(data: dict) -> float | None:
    """Validation accuracy in [0, 1] recorded in a checkpoint dict (from :func:`read_checkpoint`),
    or None for mid-epoch checkpoints and runs without validation data."""
    extra = data.get("extra") or {}
    if extra.get("val_accuracy") is not None:
        return float(extra["val_accuracy"])
    if extra.get("batch_in_epoch", 0) == 0:
        for record in data.get("history", []):
            if record.get("epoch") == data["epoch"] and record.get("val_accuracy") is not None:
                return float(record["val_accuracy"])
    return None


_val_accuracy = checkpoint_val_accuracy  # older private name, kept for callers


def list_checkpoints(run_dir: str | os.PathLike) -> list[CheckpointInfo]:
    """The checkpoints ``epoch_NNNN.pt`` / ``step_NNNNNNNN.pt`` of a run, sorted by step
    (an epoch checkpoint after a step checkpoint written at the same step).

    Raises:
        CheckpointError: the folder does not exist, or a checkpoint in it is unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run folder {run_dir} does not exist: pass the output folder of a train run "
            "(leafscope train)"
        )
    infos = []
    for path in run_dir.iterdir():
        match = _NAME.match(path.name)
        if not match:
            continue
        data = read_checkpoint(path)
        infos.append(
            CheckpointInfo(
                path=path,
                epoch=int(data["epoch"]),
                step=int(data["step"]),
                val_accuracy=checkpoint_val_accuracy(data),
                kind=match.group(1),
            )
        )
    infos.sort(key=lambda i: (i.step, i.kind == "epoch", i.epoch))
    return infos


def select_checkpoint(
    run_dir: str | os.PathLike,
    *,
    epoch: int | None = None,
    max_val_accuracy: float | None = None,
) -> Path:
    """Pick a checkpoint of a run, e.g. a *partially trained* one.

    Args:
        run_dir: the run folder.
        epoch: take the checkpoint written at the end of this epoch (0 = initial weights).
        max_val_accuracy: take the latest checkpoint whose validation accuracy is ≤ this value.

    Returns:
        The chosen path; with neither argument, the newest checkpoint.

    Raises:
        InputError: both arguments given. CheckpointError: nothing matches (the message lists
        what exists).
    """
    if epoch is not None and max_val_accuracy is not None:
        raise InputError("pass epoch or max_val_accuracy, not both")
    infos = list_checkpoints(run_dir)
    if not infos:
        raise CheckpointError(f"{run_dir} holds no checkpoints: train first (leafscope train)")
    if epoch is not None:
        for info in infos:
            if info.kind == "epoch" and info.epoch == epoch:
                return info.path
        have = sorted(i.epoch for i in infos if i.kind == "epoch")
        raise CheckpointError(f"{run_dir} has no checkpoint for epoch {epoch}: epochs saved {have}")
    if max_val_accuracy is not None:
        ok = [i for i in infos if i.val_accuracy is not None and i.val_accuracy <= max_val_accuracy]
        if not ok:
            accs = [round(i.val_accuracy, 4) for i in infos if i.val_accuracy is not None]
            raise CheckpointError(
                f"no checkpoint in {run_dir} has val accuracy <= {max_val_accuracy} "
                f"(saved: {accs}): raise the target or save earlier checkpoints"
            )
        return ok[-1].path
    return infos[-1].path
