"""The one runner: any registered task, in process or on Dask, with fingerprinted shards,
resume and merge.

A :class:`Job` names a task, its parameters, the specs of its model(s) and data set(s) and its
point selection. :func:`run` resolves the units (the selected points, or the task's own units),
records the job's *fingerprint* (task, parameters, model content hashes, data specs, units,
leafscope version), cuts the units into shards and ships one small :class:`ShardTask` per shard
to the executor. Each worker opens the model and data once (cached per process), computes the
shard's rows with the task and, with a result folder, writes ``shard-NNNNN.parquet`` itself,
stamped with the fingerprint and a checksum of its rows. ``merge`` and ``resume`` verify both:
a foreign or damaged shard is named in one line by :func:`merge`, and recomputed by a resumed
run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.data.spec import DataSpec, select_points
from leafscope.errors import InputError
from leafscope.execution.executor import Executor, make_executor, worker_device
from leafscope.execution.results import (
    ResultFolder,
    fingerprint_of,
    parse_slice,
    plan_shards,
    require_pyarrow,
    slice_shards,
)
from leafscope.execution.specs import cached
from leafscope.models.spec import ModelSpec
from leafscope.tasks.base import Context, Params, Task, get_task, json_ready, task_names

__all__ = [
    "FORMAT",
    "Job",
    "RunOptions",
    "RunResult",
    "ShardTask",
    "make_job",
    "merge",
    "params_from_json",
    "run",
    "run_shard",
]

#: Shards computed in one process run one at a time: threads of one process (Dask workers with
#: ``processes=False``) share torch's forward-mode AD levels, which concurrent jvp's corrupt.
_COMPUTE_LOCK = threading.Lock()

#: Version of the result-folder layout (bumped when shards change meaning).
FORMAT = 2
#: Subfolder of a result folder holding the task's files (Parquet readers skip ``_`` names).
FILES_DIR = "_files"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """What to compute: everything that defines the rows.

    Attributes:
        task: registered task name.
        params: the task's parameters (its ``Params``; default: the defaults).
        models: model specs by role (``"model"`` for most tasks).
        data: data specs by role (``"data"`` for most tasks).
        points: per-point tasks: how many points of ``data["data"]`` (a seeded sample
            stratified by label; None: every point).
        indices: per-point tasks: exact point indices instead of ``points``.
        seed: seed of the point sample.
        shard_size: units per shard (part of the shard plan, so of the fingerprint).
    """

    task: str
    params: Params | None = None
    models: Mapping[str, ModelSpec] = dataclasses.field(default_factory=dict)
    data: Mapping[str, DataSpec] = dataclasses.field(default_factory=dict)
    points: int | None = None
    indices: tuple[int, ...] | None = None
    seed: int = 0
    shard_size: int = 1000

    def __post_init__(self) -> None:
        cls = get_task(self.task)
        if self.params is None:
            object.__setattr__(self, "params", cls.Params())
        if cls.needs_model and not self.models:
            raise InputError(
                f"no model given: task {self.task!r} needs a checkpoint (leafscope .pt, run "
                "folder or TorchScript file) or a factory MODULE:CALLABLE"
            )
        if cls.needs_data and "data" not in self.data:
            raise InputError(f"task {self.task!r} needs a data set")
        if self.shard_size < 1:
            raise InputError(f"shard_size must be >= 1 (got {self.shard_size})")

    def absolute(self) -> Job:
        """The job with every path absolute (what is sent to workers)."""
        return dataclasses.replace(
            self,
            models={k: v.absolute() for k, v in self.models.items()},
            data={k: v.absolute() for k, v in self.data.items()},
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a job runs; nothing here changes its rows.

    Attributes:
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        executor: ``inprocess`` or ``dask``.
        workers: Dask workers of a local cluster (default: the CPU count; one per GPU).
        scheduler: address of a running Dask scheduler to join instead.
        connect_timeout: seconds to wait for a scheduler and its first worker.
        threads: torch threads per process (default: torch's in process, 1 per Dask worker).
        resume: skip the verified shards of the result folder; recompute damaged or foreign
            ones.
        part: ``(I, N)``: run only slice I of N (1-based, as job arrays number their tasks).
        progress: progress bars.
    """

    device: str = "auto"
    executor: str = "inprocess"
    workers: int | None = None
    scheduler: str | None = None
    connect_timeout: float = 30.0
    threads: int | None = None
    resume: bool = False
    part: tuple[int, int] = (1, 1)
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.part, str):
            object.__setattr__(self, "part", parse_slice(self.part))
        i, n = self.part
        if n < 1 or not 1 <= i <= n:
            raise InputError(f"part must be (I, N) with 1 <= I <= N (got {self.part})")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1 (got {self.threads})")
        if not self.connect_timeout > 0:
            raise InputError(f"connect_timeout must be > 0 seconds (got {self.connect_timeout})")


def make_job(
    task: str,
    params: Params | None = None,
    *,
    model: ModelSpec | None = None,
    data: DataSpec | None = None,
    points: int | None = None,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    shard_size: int | None = None,
) -> Job:
    """The :class:`Job` of ``task`` on the main ``model`` and ``data``, with the further models
    and data sets the task derives from them (:meth:`Task.extra_models`, :meth:`Task.extra_data`).
    """
    cls = get_task(task)
    runner = cls(params)
    models = {} if model is None else {"model": model}
    models.update(runner.extra_models(model))
    datasets = {} if data is None else {"data": data}
    if data is not None:
        datasets.update(runner.extra_data(data))
    return Job(
        task=task,
        params=runner.params,
        models=models,
        data=datasets,
        points=points,
        indices=None if indices is None else tuple(int(i) for i in indices),
        seed=seed,
        shard_size=cls.shard_size() if shard_size is None else shard_size,
    )


def _shape_generated(job: Job, context: Context) -> Job:
    """Generated sets (``noise``) of unknown shape take the shape of the main data set."""
    from leafscope.data.registry import canonical_name

    if "data" not in job.data or canonical_name(job.data["data"].name) == "noise":
        return job
    changes = {
        k: v.replace(input_shape=tuple(context.data("data").input_shape))
        for k, v in job.data.items()
        if k != "data" and v.input_shape is None and canonical_name(v.name) == "noise"
    }
    return dataclasses.replace(job, data={**job.data, **changes}) if changes else job


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; never requires CUDA unless asked."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown `device={name}`: use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"`device={name}` asked for CUDA but none is available: use `device=cpu`")
    return device


# --- worker side -------------------------------------------------------------------------------


def _model_loader(spec: ModelSpec, device: torch.device):
    return lambda: cached(("model", spec, str(device)), lambda: spec.load(device))


def _data_loader(spec: DataSpec):
    return lambda: cached(("data", spec), spec.open)


def make_context(
    job: Job, device: torch.device, units: Sequence[Any], meta: Mapping, progress: bool = False
) -> Context:
    """The :class:`Context` of ``job`` in this process (models and data opened lazily, once)."""
    return Context(
        device=device,
        params=job.params,
        units=units,
        models={k: _model_loader(v, device) for k, v in job.models.items()},
        data={k: _data_loader(v) for k, v in job.data.items()},
        meta=meta,
        progress=progress,
        seed=job.seed,
    )


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard (small and picklable: the job, its positions, where to write)."""

    job: Job
    shard: int
    positions: tuple[int, ...]
    units: tuple[Any, ...]
    meta: Mapping[str, Any]
    fingerprint: str
    device: str = "cpu"
    threads: int | None = None
    folder: str | None = None
    progress: bool = False


@dataclasses.dataclass
class ShardOutcome:
    shard: int
    rows: int
    columns: dict[str, np.ndarray] | None = None


def run_shard(task: ShardTask) -> ShardOutcome:
    """Compute one shard on this worker (top-level, so any executor can ship it)."""
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    device = worker_device(task.device)
    job = task.job
    context = make_context(job, device, task.units, task.meta, task.progress)
    runner = get_task(job.task)(job.params)
    with _COMPUTE_LOCK:
        columns = runner.compute(task.positions, context)
    missing = [c for c in runner.columns if c not in columns]
    if missing:
        raise InputError(f"task {job.task!r} returned no column(s) {missing}")
    rows = len(columns["unit"])
    if task.folder is None:
        return ShardOutcome(task.shard, rows, columns)
    ResultFolder(task.folder).write_shard(task.shard, columns, task.fingerprint)
    return ShardOutcome(task.shard, rows)


# --- client side -------------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    """What :func:`run` did.

    Attributes:
        computed: shards computed by this run.
        skipped: verified shards found and skipped (resume).
        recomputed: damaged or foreign shards that were recomputed (resume), with the reason.
        complete: every shard exists (the summary was computed and, with a folder, written).
        payload: the summary document (``_summary.json``; None when incomplete).
        rows: all rows (when complete).
        settings: what defines the rows.
        context: the client's context (its ``units``, ``meta``, loaded model and data).
    """

    computed: list[int]
    skipped: list[int]
    recomputed: dict[int, str]
    complete: bool
    payload: dict[str, Any] | None
    rows: dict[str, np.ndarray] | None
    settings: dict[str, Any]
    context: Context
    task: Task
    job: Job


def _units_record(units: Sequence[Any]) -> Any:
    if all(isinstance(u, int) for u in units) and list(units) == list(range(len(units))):
        return {"first": len(units)}
    return json_ready(list(units))


def _units_from_record(record: Any) -> list[Any]:
    if isinstance(record, dict) and set(record) == {"first"}:
        return list(range(int(record["first"])))
    return list(record)


def job_settings(job: Job, units: Sequence[Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that defines the rows (JSON), from which the fingerprint is taken."""
    from leafscope import __version__

    cls = get_task(job.task)
    return json.loads(
        json.dumps(
            {
                "task": job.task,
                "format": FORMAT,
                "version": __version__,
                "params": job.params.to_json(),
                "models": {k: v.fingerprint() for k, v in sorted(job.models.items())},
                "data": {k: v.fingerprint() for k, v in sorted(job.data.items())},
                "selection": {"points": job.points, "indices": job.indices, "seed": job.seed},
                "units": _units_record(units),
                "num_units": len(units),
                "meta": json_ready(dict(meta)),
                "shard_size": job.shard_size,
                "num_shards": len(plan_shards(len(units), job.shard_size)),
                "columns": list(cls.columns),
            },
            sort_keys=True,
        )
    )


def describe_job(job: Job, context: Context) -> dict[str, Any]:
    """Descriptive values stored beside the settings (model source, data description)."""
    from leafscope.models import load_notes

    info: dict[str, Any] = {"task": job.task}
    for name, spec in job.models.items():
        info[name] = spec.describe()
        if name == "model":
            notes = load_notes(context.model(name))
            if notes:
                info["model_notes"] = notes
    for name in job.data:
        try:
            info[f"{name}_description"] = context.data(name).describe()
        except Exception:  # noqa: BLE001 - a description never fails a run
            continue
    return info


def _check_texts(task: Task, context: Context, job: Job) -> None:
    """Refuse texts for a task that does not measure them, in one line, before anything runs."""
    if task.accepts_texts or not task.needs_data or "data" not in job.data:
        return
    data = context.data("data")
    if getattr(data, "is_text", False):
        what = "images" if task.images_only else "images and vectors"
        text_tasks = ", ".join(sorted(n for n in task_names() if get_task(n).accepts_texts))
        raise InputError(
            f"{task.name} works on {what}, but {data.name} holds texts: the tasks that "
            f"measure text classifiers are {text_tasks}"
        )


def _check_fit(task: Task, context: Context, job: Job) -> None:
    """Refuse a model that does not take the data, or vector data for an image-only task."""
    if not (task.needs_model and task.needs_data) or "model" not in job.models:
        return
    from leafscope.data import check_model_input

    data = context.data("data")
    if task.images_only and not data.is_image:
        held = (
            "texts" if getattr(data, "is_text", False) else f"vectors of shape {data.input_shape}"
        )
        raise InputError(f"{task.name} works on images, but {data.name} holds {held}")
    x, y = data.take([0])
    from leafscope.data.dataset import ImageDataset

    probe = ImageDataset(x, y, data.name, data.split, data.num_classes, data.normalization)
    check_model_input(context.model("model"), probe, source=f"the data ({data.name})")


def run(
    job: Job,
    options: RunOptions | None = None,
    *,
    out: str | Path | None = None,
    executor: Executor | None = None,
) -> RunResult:
    """Run ``job``: rows in memory (``out=None``) or Parquet shards under ``out``.

    Args:
        job: what to compute.
        options: how (device, executor, threads, resume, slice, progress).
        out: result folder; None keeps the rows in memory.
        executor: an open executor to use instead of the one ``options`` describe.

    Returns:
        A :class:`RunResult`; with every shard present the summary is computed (and written to
        ``out/_summary.json``).

    Raises:
        InputError: bad options, a folder of other settings, a slice or resume without a
            folder, or (from the task) bad input.
    """
    options = options or RunOptions()
    device = resolve_device(options.device)
    job = job.absolute()
    task = get_task(job.task)(job.params)
    context = make_context(job, device, [], {}, options.progress)
    _check_texts(task, context, job)
    job = _shape_generated(job, context)
    context = make_context(job, device, [], {}, options.progress)
    _check_fit(task, context, job)
    if task.per_point:
        labels = context.data("data").labels
        units: list[Any] = select_points(
            labels, points=job.points, indices=job.indices, seed=job.seed
        )
    else:
        units = list(task.units(context))
    if not units:
        raise InputError(f"task {job.task!r} has no units of work")
    context.units = units
    meta = json_ready(task.prepare(context))
    context.meta = meta
    settings = job_settings(job, units, meta)
    fingerprint = fingerprint_of(settings)
    shards = plan_shards(len(units), job.shard_size)
    own = slice_shards(len(shards), options.part[0] - 1, options.part[1])
    if out is None and (options.part != (1, 1) or options.resume):
        raise InputError("a slice of the shards or a resume needs a result folder (out)")
    folder = None if out is None else ResultFolder(out)
    todo, skipped, recomputed = list(own), [], {}
    created = False
    if folder is not None:
        require_pyarrow()
        created = not folder.path.exists()
        done, recomputed = folder.prepare_job(
            settings, describe_job(job, context), fingerprint, resume=options.resume, own=own
        )
        skipped = sorted(done)
        todo = [s for s in own if s not in done]
    threads = options.threads
    if threads is None and options.executor == "dask":
        threads = 1  # one torch thread per Dask worker process unless asked otherwise
    tasks = [
        ShardTask(
            job=job,
            shard=s,
            positions=tuple(shards[s]),
            units=tuple(units),
            meta=meta,
            fingerprint=fingerprint,
            device=str(device),
            threads=threads,
            folder=None if folder is None else str(folder.path),
            # bars inside a unit only in process: Dask workers' bars go nowhere
            progress=options.progress and options.executor == "inprocess",
        )
        for s in todo
    ]
    own_executor = executor is None
    try:
        if own_executor:
            executor = make_executor(
                options.executor,
                workers=options.workers,
                scheduler=options.scheduler,
                device=device,
                **_executor_extras(options),
            )
        outcomes = executor.map(run_shard, tasks, progress=options.progress, desc="shards")
    except BaseException:
        if folder is not None and not folder.finished():
            folder.discard(remove_folder=created)
        raise
    finally:
        if own_executor and executor is not None:
            executor.close()
    result = RunResult(todo, skipped, recomputed, False, None, None, settings, context, task, job)
    if folder is None:
        rows = _concat([o.columns for o in sorted(outcomes, key=lambda o: o.shard)])
        result.rows, result.complete = rows, True
        result.payload = _payload(task, settings, rows, context)
        return result
    if folder.finished() >= set(range(len(shards))):
        result.payload, result.rows = _merge_folder(folder, task, settings, context)
        result.complete = True
    return result


def _executor_extras(options: RunOptions) -> dict[str, Any]:
    """Options of newer executors (connect timeout, threads per worker), when they take them."""
    import inspect

    accepted = inspect.signature(make_executor).parameters
    extras = {"connect_timeout": options.connect_timeout, "threads": options.threads}
    return {k: v for k, v in extras.items() if k in accepted}


def _concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def _payload(
    task: Task, settings: Mapping[str, Any], rows: Mapping[str, np.ndarray], context: Context
) -> dict[str, Any]:
    summary = task.summarize(rows, context)
    return {
        "task": task.name,
        "params": settings["params"],
        "num_units": settings["num_units"],
        "num_rows": int(len(rows["unit"])),
        "num_shards": settings["num_shards"],
        "shard_size": settings["shard_size"],
        "summary": json_ready(summary),
    }


def _merge_folder(
    folder: ResultFolder, task: Task, settings: Mapping[str, Any], context: Context
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    n_shards = settings["num_shards"]
    folder.check_complete(n_shards)
    fingerprint = fingerprint_of(settings)
    folder.verify_all(n_shards, fingerprint)
    rows = folder.read_columns(n_shards)
    unit = np.asarray(rows["unit"], dtype=np.int64)
    if unit.size and (
        not bool(np.all(np.diff(unit) >= 0))
        or not np.array_equal(np.unique(unit), np.arange(settings["num_units"]))
    ):
        raise InputError(
            f"{folder.path}: the shards' rows do not cover the {settings['num_units']} units "
            "once each, in order: delete the folder and run the job again"
        )
    info = (folder.read_settings() or {}).get("info", {})
    payload = {**info, **_payload(task, settings, rows, context)}
    files = task.write_files(folder.path / FILES_DIR, rows, payload["summary"], context)
    if files:
        payload["files"] = [str(Path(f).relative_to(folder.path)) for f in files]
    folder.write_summary(payload)
    return payload, rows


def params_from_json(cls: type[Params], record: Mapping[str, Any]) -> Params:
    """``cls(**record)`` with JSON lists turned back into the tuples the fields hold."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in record:
            value = record[f.name]
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def job_from_settings(settings: Mapping[str, Any]) -> tuple[Job, list[Any]]:
    """The job (and units) a result folder's settings describe."""
    cls = get_task(settings["task"])
    models = {
        k: ModelSpec(**{f.name: v[f.name] for f in dataclasses.fields(ModelSpec)})
        for k, v in settings["models"].items()
    }
    data = {}
    for k, v in settings["data"].items():
        fields = {f.name: v.get(f.name) for f in dataclasses.fields(DataSpec) if f.name in v}
        if fields.get("input_shape") is not None:
            fields["input_shape"] = tuple(fields["input_shape"])
        data[k] = DataSpec(**fields)
    selection = settings.get("selection", {})
    indices = selection.get("indices")
    job = Job(
        task=settings["task"],
        params=params_from_json(cls.Params, settings["params"]),
        models=models,
        data=data,
        points=selection.get("points"),
        indices=None if indices is None else tuple(indices),
        seed=selection.get("seed", 0),
        shard_size=settings["shard_size"],
    )
    return job, _units_from_record(settings["units"])


def merge(path: str | Path, *, device: str = "cpu") -> dict[str, Any]:
    """Verify every shard of a result folder (fingerprint and checksum), then write and return
    its summary (``leafscope merge DIR``).

    Raises:
        InputError: not a result folder, shards missing, or a shard that is damaged or was
            produced by another job (named, one line).
    """
    folder = ResultFolder(path)
    recorded = folder.read_settings()
    if recorded is None or "task" not in recorded.get("settings", {}):
        raise InputError(f"{folder.path} is not a result folder (no _settings.json of a task)")
    settings = recorded["settings"]
    if settings.get("format") != FORMAT:
        raise InputError(
            f"{folder.path} was written by another leafscope result format "
            f"({settings.get('format')}, this one reads {FORMAT}): run the job again"
        )
    job, units = job_from_settings(settings)
    task = get_task(job.task)(job.params)
    context = make_context(job, resolve_device(device), units, settings.get("meta", {}))
    payload, _ = _merge_folder(folder, task, settings, context)
    return payload


def remove_folder(path: str | Path) -> None:
    """Delete a result folder (tests and clean reruns)."""
    shutil.rmtree(path, ignore_errors=True)
