"""What the NNK tasks (``nnk``, ``stability``, ``invariance``, ``early-stopping``) share: the
models they derive from the main one (a run's checkpoints, further runs to compare), the first
points of a data set, and JSON cells of result rows.

A derived model keeps the main model's options (``normalize``, ``output``) and, for a user
model (a factory, or a TorchScript file), its architecture: a leafscope checkpoint then only
supplies the weights. So checkpoints that leafscope wrote while training a user model (e.g. the
runs of ``early-stopping``) are measured with ``model`` = that factory.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.errors import InputError
from leafscope.tasks.base import Context, take_sample

__all__ = [
    "MAIN",
    "check_layers",
    "derived_model",
    "has_model",
    "json_cell",
    "labelled_runs",
    "model_roles",
    "nan_if_none",
    "none_if_nan",
    "parse_run_entry",
    "require_layers",
    "sample_points",
    "run_checkpoints",
    "run_models",
    "split_names",
]

#: The role of the main model of a job.
MAIN = "model"


def split_names(values: Sequence[str]) -> tuple[str, ...]:
    """Names stripped, empty ones dropped, each at most once (order kept)."""
    return tuple(dict.fromkeys(v.strip() for v in values if v and v.strip()))


def require_layers(layers: Sequence[str], field: str = "layers") -> None:
    """InputError naming ``field`` when no layer is named (checked when a job is made: the
    defaults of the parameters stay valid)."""
    if not layers:
        raise InputError(f"`{field}` must name at least one layer of the model, e.g. conv1,fc1")


def parse_run_entry(entry: str) -> tuple[str | None, str]:
    """``LABEL=PATH`` -> (LABEL, PATH); a bare ``PATH`` -> (None, PATH)."""
    label, sep, path = entry.partition("=")
    if sep and label and "/" not in label and path:
        return label.strip(), path.strip()
    return None, entry.strip()


def labelled_runs(entries: Sequence[str]) -> list[tuple[str, str]]:
    """``(label, path)`` of each entry; an unlabelled entry is labelled by its text, repeated
    labels get ``#2``, ``#3``... (the main model is labelled ``model``)."""
    seen = {MAIN: 1}
    out = []
    for entry in entries:
        label, path = parse_run_entry(entry)
        label = label or path
        count = seen.get(label, 0) + 1
        seen[label] = count
        out.append((label if count == 1 else f"{label}#{count}", path))
    return out


def _is_torchscript(path: str | Path) -> bool:
    from leafscope.models.loading import is_torchscript

    p = Path(path)
    return p.is_file() and is_torchscript(p)


def derived_model(main: Any, path: str | Path) -> Any:
    """The :class:`~leafscope.models.ModelSpec` of checkpoint (or run folder) ``path``
    measured like the main model ``main`` (None: the checkpoint alone).

    * a TorchScript file is its own model (with the main model's ``normalize`` and ``output``);
    * with a user main model (a factory or a TorchScript file) the checkpoint's weights are
      loaded into it (a run folder gives its newest checkpoint);
    * with a leafscope checkpoint as the main model, ``path`` replaces it (its own architecture).

    Raises:
        InputError: ``path`` does not exist.
    """
    from leafscope.models.spec import ModelSpec

    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(
            f"{path}: no checkpoint file or run folder there (a leafscope .pt, a run folder, a "
            "TorchScript file or a state_dict file): check the path"
        )
    p = p.resolve()
    if main is None:
        return ModelSpec(checkpoint=str(p))
    if _is_torchscript(p):
        return dataclasses.replace(
            main, checkpoint=str(p), factory=None, factory_kwargs="{}", weights=None
        )
    user = main.factory is not None or _is_torchscript(main.checkpoint or "")
    if user:
        if p.is_dir():
            from leafscope.training import select_checkpoint

            p = select_checkpoint(p)
        return dataclasses.replace(main, weights=str(p))
    return dataclasses.replace(main, checkpoint=str(p), weights=None)


def run_models(main: Any, entries: Sequence[str]) -> dict[str, Any]:
    """The further models ``run_1``, ``run_2``... of ``entries`` (``[LABEL=]PATH``), each
    derived from ``main`` by :func:`derived_model`."""
    return {
        f"run_{i}": derived_model(main, path)
        for i, (_, path) in enumerate(labelled_runs(entries), start=1)
    }


def has_model(context: Context, role: str) -> bool:
    """Whether the job of ``context`` has a model ``role``."""
    return context.has_model(role)


def model_roles(context: Context, entries: Sequence[str]) -> list[tuple[str, str]]:
    """``(role, label)`` of every model of a job: the main model (label ``model``) when given,
    then the models of ``entries`` (see :func:`run_models`)."""
    roles = [(MAIN, MAIN)] if has_model(context, MAIN) else []
    roles += [(f"run_{i}", label) for i, (label, _) in enumerate(labelled_runs(entries), start=1)]
    return roles


def run_checkpoints(
    run: str | Path, *, include_initial: bool = False, step_checkpoints: bool = False
) -> list[Any]:
    """The :class:`~leafscope.training.checkpoint.CheckpointInfo` of the epoch checkpoints of a
    run folder, oldest first (epoch 0 with ``include_initial``; the ``step_NNNNNNNN.pt`` ones
    with ``step_checkpoints``, except those written at an epoch's end, which hold the epoch's
    weights).

    Raises:
        InputError: no such folder, or no checkpoint in it.
    """
    from leafscope.errors import CheckpointError
    from leafscope.training import list_checkpoints

    folder = Path(run).expanduser()
    if not folder.is_dir():
        raise InputError(f"`run={run}`: no such run folder (the out folder of a training run)")
    try:
        infos = list_checkpoints(folder)
    except CheckpointError as exc:
        raise InputError(f"`run={run}`: {exc}") from None
    kinds = ("epoch", "step") if step_checkpoints else ("epoch",)
    infos = [i for i in infos if i.kind in kinds and (include_initial or i.step > 0)]
    epoch_steps = {i.step for i in infos if i.kind == "epoch"}
    infos = [i for i in infos if i.kind == "epoch" or i.step not in epoch_steps]
    if not infos:
        raise InputError(
            f"`run={run}` holds no epoch checkpoints (epoch_NNNN.pt, epoch >= 1): train it first"
        )
    return infos


def sample_points(context: Context, count: int, role: str = "data", *, field: str = "points"):
    """``count`` points of data set ``role``: ``(x, y)`` tensors, the seeded sample stratified
    by label that ``points`` means for every task (:func:`leafscope.tasks.base.take_sample`,
    seeded by the job's data seed), in increasing index order; the same on every worker.

    Raises:
        InputError: the set has fewer points (the message names ``field``).
    """
    data = context.data(role)
    if count > len(data):
        raise InputError(
            f"`{field}={count}` exceeds the {len(data)} points of {data.name} ({data.split}): "
            f"pass at most {len(data)}"
        )
    return take_sample(data, count, context.seed)


def check_layers(model: torch.nn.Module, layers: Sequence[str]) -> None:
    """Raise the model layer's InputError (listing the valid names) for an unknown layer."""
    from leafscope.models.inspect import resolve_modules

    resolve_modules(model, list(layers))


def json_cell(value: Any) -> str:
    """A JSON text cell of a result row (NaN as null)."""
    return json.dumps(_finite(value), sort_keys=True)


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    return value


def nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def none_if_nan(value: Any) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else value
