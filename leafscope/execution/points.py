"""Per-point jobs at scale: one runner for every command that computes rows point by point.

A job (:class:`PointJob`) is a *kind* (a registered name, e.g. ``"denoise"``), ``num_points``
points addressed by position ``0..num_points-1``, the JSON-able parameters that define its rows,
and the specs of its model and data. The runner cuts the positions into shards, ships one small
:class:`PointTask` per shard to the executor and calls :func:`point_shard` there, which looks
the kind up in :data:`POINT_KINDS` and runs its compute function on the worker (model and data
loaded once per worker from the specs). With a result folder each task writes its own Parquet
shard; a folder's ``_settings.json`` names the kind (``settings.command``), so
:func:`merge_results` (``leafscope merge DIR``) merges any job.

Every row carries the position of its point in the column ``index`` (a kind may write several
rows per point, e.g. one per noise level and method, in nondecreasing ``index``). A kind's
compute function must give a point's rows independent of the executor; the shard plan
(``shard_size``) is part of the settings, so a sliced (``--shard I/N``) or resumed run computes
exactly the shards of an uninterrupted one.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leafscope.errors import InputError
from leafscope.execution.executor import Executor
from leafscope.execution.results import (
    ResultFolder,
    plan_shards,
    require_pyarrow,
    slice_shards,
)
from leafscope.execution.specs import DataSpec, ModelSpec

__all__ = [
    "POINT_KINDS",
    "PointJob",
    "PointJobResult",
    "PointKind",
    "PointTask",
    "merge_points",
    "merge_results",
    "point_kind",
    "point_shard",
    "read_rows",
    "register_point_kind",
    "run_point_job",
    "run_shards",
]

#: Modules that register the built-in kinds when imported (looked up on first use).
BUILTIN_KIND_MODULES = ("leafscope.execution.point_kinds",)


@dataclass(frozen=True)
class PointTask:
    """One shard of a per-point job (small and picklable: specs, positions, parameters).

    Attributes:
        kind: the registered kind that computes it.
        shard: shard number.
        positions: the shard's point positions ``0 <= p < num_points``, increasing.
        params: the job's parameters (JSON-able values).
        model: how to load the model (None for kinds without one).
        data: how to load the data (None for kinds without data).
        extra: further data specs by name (e.g. ``{"train": DataSpec(...)}``).
        device: ``cpu``, ``cuda`` (a Dask GPU worker's own GPU) or ``cuda:N``.
        num_points: the job's point count.
        folder: write ``shard-NNNNN.parquet`` there; None: return the rows.
    """

    kind: str
    shard: int
    positions: tuple[int, ...]
    params: Mapping[str, Any]
    model: ModelSpec | None = None
    data: DataSpec | None = None
    extra: Mapping[str, DataSpec] = field(default_factory=dict)
    device: str = "cpu"
    num_points: int = 0
    folder: str | None = None


@dataclass(frozen=True)
class PointKind:
    """What a job kind computes.

    Attributes:
        name: the kind's name (``settings.command`` of its result folders).
        compute: ``compute(task) -> {column: array}``, the rows of one shard; 1-D columns and
            2-D ``(rows, k)`` float columns; ``index`` holds each row's point position.
        summarize: ``summarize(settings, info, columns) -> dict``, the JSON summary of all rows.
        columns: the columns ``compute`` returns (recorded in the settings).
    """

    name: str
    compute: Callable[[PointTask], dict[str, np.ndarray]]
    summarize: Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, np.ndarray]], dict]
    columns: tuple[str, ...]


#: Shards computed in one process run one at a time: threads of one process (Dask workers with
#: ``processes=False``) share torch's forward-mode AD levels, which concurrent jvp's corrupt.
_COMPUTE_LOCK = threading.Lock()

#: The registered kinds by name.
POINT_KINDS: dict[str, PointKind] = {}


def register_point_kind(kind: PointKind) -> PointKind:
    """Register ``kind`` under ``kind.name`` (replacing one of that name) and return it.

    A Dask worker finds a kind only if the module that registers it is imported there: define
    custom kinds in an importable module that registers them at import (as the built-ins do).
    """
    if "index" not in kind.columns:
        raise InputError(f"point kind {kind.name!r} must have an 'index' column")
    POINT_KINDS[kind.name] = kind
    return kind


def point_kind(name: str) -> PointKind:
    """The kind registered as ``name`` (the built-ins are registered on first use)."""
    if name not in POINT_KINDS:
        for module in BUILTIN_KIND_MODULES:
            importlib.import_module(module)
    if name not in POINT_KINDS:
        raise InputError(f"unknown job kind {name!r}: use one of {', '.join(sorted(POINT_KINDS))}")
    return POINT_KINDS[name]


@dataclass
class ShardOutcome:
    """What a task sends back: its shard, row count and (without a folder) the rows."""

    shard: int
    rows: int
    columns: dict[str, np.ndarray] | None = None


def point_shard(task: PointTask) -> ShardOutcome:
    """Compute one shard with its kind (top-level, so any executor can ship it)."""
    kind = point_kind(task.kind)
    with _COMPUTE_LOCK:
        columns = kind.compute(task)
    missing = [c for c in kind.columns if c not in columns]
    if missing:
        raise InputError(f"kind {task.kind!r} returned no column(s) {missing}")
    rows = len(columns["index"])
    if task.folder is None:
        return ShardOutcome(task.shard, rows, columns)
    ResultFolder(task.folder).write_shard(task.shard, columns)
    return ShardOutcome(task.shard, rows)


@dataclass
class PointJob:
    """A whole per-point job.

    Attributes:
        kind: registered kind name.
        num_points: points, at positions ``0..num_points-1``.
        params: JSON-able parameters that define the rows (compared on ``--resume``).
        model: the model's spec.
        data: the data's spec.
        extra: further data specs by name.
        device: compute device (see :class:`PointTask`).
        shard_size: points per shard.
        info: descriptive values written beside the settings (not compared on resume).
    """

    kind: str
    num_points: int
    params: dict[str, Any] = field(default_factory=dict)
    model: ModelSpec | None = None
    data: DataSpec | None = None
    extra: dict[str, DataSpec] = field(default_factory=dict)
    device: str = "cpu"
    shard_size: int = 1000
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        point_kind(self.kind)
        if self.num_points < 1:
            raise InputError(f"a {self.kind} job needs at least one point (got {self.num_points})")

    @property
    def shards(self) -> list[range]:
        return plan_shards(self.num_points, self.shard_size)

    def settings(self) -> dict[str, Any]:
        """What defines the rows (device, executor and batch sizes are not part of it)."""
        return {
            "command": self.kind,
            "format": 1,
            "model": None if self.model is None else self.model.fingerprint(),
            "data": None if self.data is None else self.data.fingerprint(),
            "extra": {k: v.fingerprint() for k, v in sorted(self.extra.items())},
            "num_points": self.num_points,
            "params": self.params,
            "shard_size": self.shard_size,
            "num_shards": len(self.shards),
            "columns": list(point_kind(self.kind).columns),
        }

    def task(self, shard: int, folder: str | None) -> PointTask:
        return PointTask(
            kind=self.kind,
            shard=shard,
            positions=tuple(self.shards[shard]),
            params=self.params,
            model=self.model,
            data=self.data,
            extra=dict(self.extra),
            device=self.device,
            num_points=self.num_points,
            folder=folder,
        )


@dataclass
class PointJobResult:
    """What :func:`run_point_job` (or :func:`run_shards`) did.

    Attributes:
        computed: shards computed by this run.
        skipped: finished shards skipped (``resume``).
        complete: every shard of the job exists (the summary was written / computed).
        summary: the summary payload (None when incomplete).
        columns: all rows (only without a folder).
    """

    computed: list[int]
    skipped: list[int]
    complete: bool
    summary: dict[str, Any] | None = None
    columns: dict[str, np.ndarray] | None = None


def concat_columns(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The columns of ``parts`` joined row-wise, in order."""
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def run_shards(
    job: Any,
    executor: Executor,
    shard_fn: Callable[[Any], ShardOutcome],
    summarize: Callable[[Mapping[str, np.ndarray]], dict[str, Any]],
    merge: Callable[[Path], dict[str, Any]],
    *,
    out: str | Path | None = None,
    resume: bool = False,
    part: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> PointJobResult:
    """The shard machinery shared by every sharded job (spectrum, per-point kinds).

    Args:
        job: has ``shards``, ``settings()``, ``info`` and ``task(shard, folder)``.
        executor: where the shards run (results do not depend on it).
        shard_fn: the top-level function computing one task.
        summarize: the summary payload of all rows (in memory, ``out=None``).
        merge: checks a complete folder and writes its summary, returning the payload.
        out: result folder; None keeps the rows in memory (small jobs, ``--json``).
        resume: skip the finished shards in ``out``.
        part: ``(I, N)``: run only slice I of N of the shards (job arrays); merge later.
        progress: a tqdm bar counting shards.

    Returns:
        A :class:`PointJobResult`; with every shard present, ``_summary.json`` is written.
    """
    shards = job.shards
    own = slice_shards(len(shards), *part)
    if out is None:
        if part != (0, 1) or resume:
            raise InputError("--shard and --resume need --out DIR (a result folder)")
        tasks = [job.task(s, None) for s in own]
        outcomes = executor.map(shard_fn, tasks, progress=progress, desc="shards")
        columns = concat_columns([o.columns for o in outcomes])
        return PointJobResult(list(own), [], True, summarize(columns), columns)
    require_pyarrow()
    folder = ResultFolder(out)
    done = folder.prepare(job.settings(), job.info, resume=resume, own=own)
    todo = [s for s in own if s not in done]
    tasks = [job.task(s, str(folder.path)) for s in todo]
    executor.map(shard_fn, tasks, progress=progress, desc="shards")
    if folder.finished() >= set(range(len(shards))):
        return PointJobResult(todo, sorted(done), True, merge(folder.path))
    return PointJobResult(todo, sorted(done), False)


def _payload(
    settings: Mapping[str, Any], info: Mapping[str, Any], columns: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    kind = point_kind(settings["command"])
    return {
        **dict(info),
        "kind": kind.name,
        "num_points": int(settings["num_points"]),
        "num_rows": int(len(columns["index"])),
        "num_shards": settings["num_shards"],
        "shard_size": settings["shard_size"],
        "summary": kind.summarize(settings, info, columns),
    }


def run_point_job(
    job: PointJob,
    executor: Executor,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    part: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> PointJobResult:
    """Run ``job`` on ``executor``: shards written under ``out`` (or rows kept in memory).

    Args: as :func:`run_shards` (``job`` a :class:`PointJob`).

    Returns:
        A :class:`PointJobResult` whose ``summary`` is the payload of ``_summary.json``:
        ``kind``, ``num_points``, ``num_rows``, ``num_shards``, ``shard_size``, the job's
        ``info`` and the kind's ``summary``.
    """
    settings = job.settings()
    return run_shards(
        job,
        executor,
        point_shard,
        lambda columns: _payload(settings, job.info, columns),
        merge_points,
        out=out,
        resume=resume,
        part=part,
        progress=progress,
    )


def _check_rows(folder: ResultFolder, index: np.ndarray, num_points: int) -> None:
    index = np.asarray(index, dtype=np.int64)
    ordered = index.size == 0 or bool(np.all(np.diff(index) >= 0))
    if not ordered or not np.array_equal(np.unique(index), np.arange(num_points)):
        raise InputError(
            f"{folder.path}: the shards' rows do not cover the {num_points} recorded points "
            "once each, in order: delete the folder and run the job again"
        )


def read_rows(path: str | Path, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Every row of a complete per-point result folder, in point order.

    Args:
        path: the ``--out`` folder.
        columns: only these columns (default: all).

    Raises:
        InputError: not a per-point result folder, or shards missing.
    """
    folder = ResultFolder(path)
    settings = _point_settings(folder)
    folder.check_complete(settings["num_shards"])
    return folder.read_columns(settings["num_shards"], columns)


def _point_settings(folder: ResultFolder) -> dict[str, Any]:
    recorded = folder.read_settings()
    command = None if recorded is None else recorded.get("settings", {}).get("command")
    if command is None or command == "spectrum":
        raise InputError(f"{folder.path} is not a per-point result folder (no _settings.json)")
    point_kind(command)
    return recorded["settings"]


def merge_points(path: str | Path) -> dict[str, Any]:
    """Check a per-point folder is complete and consistent, then write its ``_summary.json``.

    Returns:
        The summary payload (also written to ``path/_summary.json``).

    Raises:
        InputError: not a per-point folder, shards missing, or rows that do not cover the
            recorded points.
    """
    folder = ResultFolder(path)
    settings = _point_settings(folder)
    folder.check_complete(settings["num_shards"])
    columns = folder.read_columns(settings["num_shards"])
    _check_rows(folder, columns["index"], settings["num_points"])
    info = (folder.read_settings() or {}).get("info", {})
    payload = _payload(settings, info, columns)
    folder.write_summary(payload)
    return payload


def merge_results(path: str | Path) -> dict[str, Any]:
    """:func:`merge_points` of a per-point folder (``leafscope merge DIR``)."""
    recorded = ResultFolder(path).read_settings()
    if recorded is None:
        raise InputError(
            f"{path} is not a spectrum result folder nor a per-point one (no _settings.json): "
            "pass the --out DIR of a job"
        )
    return merge_points(path)
