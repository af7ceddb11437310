"""The task abstraction: every analysis is a :class:`Task` with frozen keyword-only
:class:`Params`, computed unit by unit on any executor.

A task says four things, and nothing about files, flags or clusters:

* its parameters (:attr:`Task.Params`, a frozen keyword-only dataclass whose field docs give the
  units and shapes; ``metadata={"help": ...}`` holds the one-line help the CLI shows);
* its units of work (:meth:`Task.units`): by default the selected points of its data set, or
  any JSON-able descriptions (one model, one layer, one seed, one data set);
* the rows of a block of units (:meth:`Task.compute`), given a :class:`Context` that hands out
  the loaded model(s) and data set(s) of the worker it runs on;
* the summary of all rows (:meth:`Task.summarize`) and, optionally, its report section.

The runner (:mod:`leafscope.execution.runner`) cuts the units into shards, runs them in process
or on Dask, writes fingerprinted Parquet shards, resumes and merges; the CLI
(:mod:`leafscope.cli.tasks`) builds each command's flags from the fields of its ``Params``.
A new analysis is one file defining a task and registering it with :func:`register_task`.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from leafscope.errors import InputError

__all__ = [
    "TASKS",
    "Context",
    "Params",
    "Task",
    "get_task",
    "param",
    "register_task",
    "split_roles",
    "take_sample",
    "task_names",
]

#: Modules that register the built-in tasks when imported (looked up on first use).
BUILTIN_TASK_MODULES = (
    "leafscope.tasks.spectrum",
    "leafscope.tasks.denoise",
    "leafscope.tasks.involutivity",
    "leafscope.tasks.generate",
    "leafscope.tasks.ood",
    "leafscope.tasks.transfer",
    "leafscope.tasks.nnk",
    "leafscope.tasks.path",
    "leafscope.tasks.walk",
    "leafscope.tasks.stability",
    "leafscope.tasks.invariance",
    "leafscope.tasks.early_stopping",
    "leafscope.tasks.thermo",
    "leafscope.tasks.explore",
    "leafscope.tasks.curvature",
    "leafscope.tasks.attack",
    "leafscope.tasks.adversarial",
)


def param(default: Any = dataclasses.MISSING, *, help: str, **metadata: Any) -> Any:  # noqa: A002
    """A :class:`Params` field with its one-line help (and optional ``choices``, ``metavar``,
    ``flag`` overriding the generated ``--name``, ``cli=False`` to keep it off the command line).

    Mutable defaults are not allowed (the dataclasses are frozen): use tuples.
    """
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params:
    """Base of every task's parameters: frozen, keyword-only, validated where they live.

    Subclasses add fields with :func:`param` and check them in :meth:`validate` (called by
    ``__post_init__``), raising :class:`InputError` that names the field, the bad value and a
    valid one. Parameter names are library names: errors never name a CLI flag.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` for an invalid combination of fields."""

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON-able values (tuples become lists)."""
        return json_ready(dataclasses.asdict(self))


def take_sample(data: Any, count: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of ``count`` points of the point set ``data`` as ``points`` means for every
    task: a seeded sample stratified by label (:func:`leafscope.data.select_points`), in
    increasing index order; every point for None or a count above the set's size."""
    from leafscope.data.spec import select_points

    n = len(data)
    wanted = None if count is None or count >= n else count
    return data.take(select_points(data.labels, points=wanted, seed=seed))


def split_roles(data: Any, purpose: str, **roles: str) -> dict[str, Any]:
    """The data roles of a task that needs given splits of its data set: ``role=split`` for
    each, and the main set (``data``) itself. All carry ``purpose`` (e.g. "ood fits its
    detectors on the train split"), so a set without a split of its own is refused, when
    opened, with the one fix that applies to this task (a held-out split), not with the whole
    set (see :meth:`leafscope.data.spec.DataSpec.with_split`)."""
    out = {"data": data.with_split(data.split, purpose=purpose)}
    out.update({role: data.with_split(split, purpose=purpose) for role, split in roles.items()})
    return out


def concat_rows(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The rows of several blocks joined in order (each a ``{column: array}``)."""
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def json_ready(value: Any) -> Any:
    """``value`` with tuples turned into lists, recursively (what JSON gives back)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


class Context:
    """What a block of units gets on the worker that computes it.

    Attributes:
        device: the compute device of this worker.
        params: the task's parameters.
        units: the whole job's units (positions index into it).
        meta: JSON-able values the runner computed once before the job (e.g. the model's class
            count), the same on every worker.
        progress: show progress bars for slow loops inside a unit (the run's setting).
        seed: the job's data seed: tasks that pick their own points (per-unit tasks) draw them
            with it, as the runner draws the points of a per-point job.
    """

    def __init__(
        self,
        *,
        device: torch.device,
        params: Params,
        units: Sequence[Any],
        models: Mapping[str, Callable[[], nn.Module]],
        data: Mapping[str, Callable[[], Any]],
        meta: Mapping[str, Any] | None = None,
        progress: bool = False,
        seed: int = 0,
    ):
        self.device = device
        self.progress = progress
        self.seed = int(seed)
        self.params = params
        self.units = units
        self.meta = dict(meta or {})
        self._models = dict(models)
        self._data = dict(data)
        self._classes: dict[tuple[str, str], int] = {}

    def model(self, name: str = "model") -> nn.Module:
        """The loaded model ``name`` (eval mode, on :attr:`device`; cached per worker)."""
        if name not in self._models:
            raise InputError(f"this job has no model {name!r} (it has {sorted(self._models)})")
        return self._models[name]()

    def data(self, name: str = "data") -> Any:
        """The opened data set ``name`` (a :class:`leafscope.data.PointSet`; cached per
        worker, decoded a batch at a time by ``take``)."""
        if name not in self._data:
            raise InputError(f"this job has no data set {name!r} (it has {sorted(self._data)})")
        return self._data[name]()

    def num_classes(self, model: str = "model", data: str = "data") -> int:
        """The number of logits of ``model`` on a point of ``data`` (one forward pass, cached).

        Raises:
            InputError: fewer than 2 (G, its eigen-directions and every attack need C >= 2).
        """
        key = (model, data)
        if key not in self._classes:
            x, _ = self.data(data).take([0])
            with torch.no_grad():
                count = int(self.model(model)(x.to(self.device)).shape[-1])
            if count < 2:
                raise InputError(
                    f"the model gives {count} logit per point: G needs at least 2 classes"
                )
            self._classes[key] = count
        return self._classes[key]

    def has_data(self, name: str) -> bool:
        """Whether the job has a data set ``name``."""
        return name in self._data

    def point_batches(
        self, positions: Sequence[int], batch_size: int, role: str = "data"
    ) -> Iterator[tuple[list[int], list[int], Any, Any]]:
        """The points at ``positions`` of a per-point job, decoded a batch at a time:
        ``(block, indices, x, y)`` with ``block`` the positions of the batch, ``indices`` their
        data indices (``units[position]``) and ``x, y`` from ``data(role).take(indices)``."""
        data = self.data(role)
        for start in range(0, len(positions), batch_size):
            block = list(positions[start : start + batch_size])
            indices = [int(self.units[i]) for i in block]
            x, y = data.take(indices)
            yield block, indices, x, y

    def has_model(self, name: str = "model") -> bool:
        """Whether the job has a model ``name``."""
        return name in self._models


class Task(ABC):
    """One analysis. Subclasses set the class attributes and implement :meth:`compute` and
    :meth:`summarize`; they are registered with :func:`register_task`.

    Attributes:
        name: the registered name (the CLI command, ``settings.task`` of result folders).
        Params: the frozen keyword-only parameter dataclass.
        columns: the columns :meth:`compute` returns; ``unit`` (each row's unit position) is
            always one of them.
        summary: one line for ``--help`` lists.
        description: the command's description.
        needs_model: the task reads a trained model (``model`` in the context).
        needs_data: the task reads a data set (``data`` in the context).
        per_point: the units are points of the data set (selected by the runner's point
            selection); otherwise :meth:`units` lists them.
        images_only: refuse vector data in one line.
        accepts_texts: the task measures text classifiers on texts; the others refuse texts
            in one line before anything runs.
        payload_file: where the default :meth:`write_files` writes :meth:`payload` as JSON
            (a file name under ``OUT/_files``: the data a report figure draws), or None.
        default_shard_size: units per shard unless asked (see :meth:`shard_size`).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    columns: ClassVar[tuple[str, ...]] = ("unit",)
    summary: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_model: ClassVar[bool] = True
    needs_data: ClassVar[bool] = True
    per_point: ClassVar[bool] = True
    images_only: ClassVar[bool] = False
    accepts_texts: ClassVar[bool] = False
    payload_file: ClassVar[str | None] = None
    # units per shard by default: many points per shard, one unit (a model, a seed, a layer)
    # per shard for tasks with their own units, so an executor runs them in parallel
    default_shard_size: ClassVar[int | None] = None

    @classmethod
    def shard_size(cls) -> int:
        """The default units per shard (1000 points; 1 unit of a task with its own units)."""
        if cls.default_shard_size is not None:
            return cls.default_shard_size
        return 1000 if cls.per_point else 1

    def __init__(self, params: Params | None = None):
        params = self.Params() if params is None else params
        if not isinstance(params, self.Params):
            raise InputError(
                f"task {self.name!r} takes {self.Params.__name__} parameters "
                f"(got {type(params).__name__})"
            )
        self.params = params

    def units(self, context: Context) -> list[Any]:
        """The units of work of a task that is not per point (JSON-able descriptions)."""
        raise NotImplementedError(f"task {self.name!r} is per point: it has no own units")

    def extra_models(self, model: Any) -> dict[str, Any]:
        """Further models the task reads, by role, derived from the main
        :class:`leafscope.models.ModelSpec` ``model`` (None when none was given), e.g. one
        per checkpoint of a run. Default: none."""
        return {}

    def extra_data(self, data: Any) -> dict[str, Any]:
        """Further data sets the task reads, by role, derived from the main
        :class:`leafscope.data.DataSpec` ``data`` (e.g. its train split, the OOD sets: the same
        options with another name or split). Default: none."""
        return {}

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        """What the command prints when the job completes (default: the scalar entries of the
        summary on one line)."""
        scalars = []
        for key, value in summary.items():
            if isinstance(value, float):
                scalars.append(f"{key}={value:.4g}")
            elif isinstance(value, (int, str)) and not isinstance(value, bool):
                scalars.append(f"{key}={value}")
        return [" ".join(scalars)] if scalars else []

    def prepare(self, context: Context) -> dict[str, Any]:
        """Values computed once in the client before the job (JSON-able, passed to every
        worker as ``context.meta``); also the place to refuse bad input early."""
        return {}

    @abstractmethod
    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        """The rows of the units at ``positions`` (increasing): ``{column: array}`` with 1-D
        columns and 2-D ``(rows, k)`` float columns; ``unit`` holds each row's position."""

    @abstractmethod
    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        """The JSON summary of all rows."""

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        """The ``--json`` document beside the summary (default: nothing more)."""
        return {}

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        """Write the task's files (figures, image strips, arrays) into ``folder`` (a
        :class:`pathlib.Path`, ``OUT/_files`` of a result folder: Parquet readers skip it) and
        return their paths. Default: :meth:`payload` as JSON in :attr:`payload_file`, if set
        (what :func:`leafscope.report.results.write_result_figures` draws), else nothing."""
        if self.payload_file is None:
            return []
        from pathlib import Path

        from leafscope.io import write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        document = self.payload(rows, summary, context)
        return [write_json(folder / self.payload_file, document)]

    def report_section(self, summary: Mapping[str, Any]) -> str | None:
        """HTML of this task's report section (None: the report lists the summary)."""
        return None


#: The registered tasks by name.
TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Register a task class under ``cls.name`` (a class decorator; returns the class).

    A Dask worker finds a task only if the module that registers it is imported there: define
    tasks in an importable module that registers them at import (as the built-ins do).
    """
    if not cls.name:
        raise InputError(f"task class {cls.__name__} has no name")
    if "unit" not in cls.columns:
        raise InputError(f"task {cls.name!r} must have a 'unit' column")
    if not (dataclasses.is_dataclass(cls.Params) and cls.Params.__dataclass_params__.frozen):
        raise InputError(f"task {cls.name!r}: Params must be a frozen dataclass")
    TASKS[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in BUILTIN_TASK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name`` (the built-ins are registered on first use)."""
    if name not in TASKS:
        _load_builtins()
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}: use one of {', '.join(task_names())}")
    return TASKS[name]


def task_names() -> list[str]:
    """Every registered task name, built-ins included, sorted."""
    _load_builtins()
    return sorted(TASKS)
