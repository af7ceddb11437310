"""Executors: run one top-level function over many items, in this process or on a Dask cluster.

The contract every job relies on (spectrum shards, OOD shards, NNK chunks):
``executor.map(fn, items)`` returns ``[fn(item) for item in items]``, in the order of ``items``,
whatever the executor. ``fn`` must be a top-level (picklable) function and each item a small
picklable description of the work (indices, a model spec), never a large tensor: workers load
the model and data once each (see :mod:`leafscope.execution.cache`).

A Dask cluster started here binds to ``127.0.0.1`` only (its comms, and the HTTP servers that
scheduler and workers start even with the dashboard off); joining an
existing cluster (``scheduler="tcp://host:8786"``) uses whatever that cluster exposes.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from leafscope.errors import InputError

__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "check_executor_options",
    "make_executor",
    "gpu_for_worker",
    "require_distributed",
    "worker_device",
]

EXECUTORS = ("inprocess", "dask")
LOCAL_HOST = "127.0.0.1"

T = TypeVar("T")
R = TypeVar("R")


class Executor(ABC):
    """Runs ``fn`` over items; subclasses differ only in where ``fn`` runs.

    Attributes:
        kind: ``"inprocess"`` or ``"dask"``.
        workers: number of workers that run items at the same time.
    """

    kind: str = ""
    workers: int = 1

    @abstractmethod
    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        progress: bool = False,
        desc: str = "tasks",
    ) -> list[R]:
        """``[fn(item) for item in items]`` in the order of ``items``.

        Args:
            fn: a top-level function (picklable by reference).
            items: picklable task descriptions.
            progress: show a tqdm bar counting finished items.
            desc: the bar's label (e.g. ``"shards"``).

        Returns:
            The results, one per item, in order. The first failing item's exception is raised.
        """

    def close(self) -> None:  # noqa: B027 - a no-op unless the executor holds workers
        """Release workers (a no-op in process)."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description for logs and result files."""
        return {"kind": self.kind, "workers": self.workers}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit=desc.rstrip("s") or "task", disable=not progress)


class InProcessExecutor(Executor):
    """Runs every item here, one after the other (the default: no cluster, no dependency)."""

    kind = "inprocess"
    workers = 1

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        progress: bool = False,
        desc: str = "tasks",
    ) -> list[R]:
        items = list(items)
        bar = _bar(len(items), desc, progress)
        results = []
        with bar:
            for item in items:
                results.append(fn(item))
                bar.update(1)
        return results


def require_distributed() -> Any:
    """Import :mod:`distributed` or raise one clear :class:`InputError` naming the extra."""
    try:
        import distributed
    except ImportError as exc:
        raise InputError(
            "--executor dask needs dask.distributed, which is not installed: "
            "pip install 'leafscope[dask]' (or use --executor inprocess)"
        ) from exc
    return distributed


def gpu_for_worker(name: Any, gpu_count: int) -> int:
    """The GPU a Dask worker named ``name`` uses: ``int(name) % gpu_count`` (LocalCluster names
    its workers 0, 1, ...; another name falls back to a stable hash)."""
    if gpu_count < 1:
        raise InputError(f"gpu_count must be >= 1 (got {gpu_count})")
    try:
        return int(name) % gpu_count
    except (TypeError, ValueError):
        return sum(str(name).encode()) % gpu_count


def worker_device(device: str | torch.device) -> torch.device:
    """The device a task runs on: ``device`` itself, except that a bare ``"cuda"`` inside a Dask
    worker of a local GPU cluster becomes that worker's own GPU (:func:`gpu_for_worker`)."""
    device = torch.device(device)
    if device.type != "cuda" or device.index is not None or not torch.cuda.is_available():
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    return torch.device("cuda", gpu_for_worker(name, torch.cuda.device_count()))


def _restore_environment(before: dict[str, str]) -> None:
    """Undo what starting worker processes wrote into this process's environment (Dask's nanny
    sets ``OMP_NUM_THREADS=1`` and the like for its workers; this process and the programs it
    starts later keep their own settings)."""
    for key in set(os.environ) - set(before):
        del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


class DaskExecutor(Executor):
    """Runs items on a Dask cluster: a new local one, an existing scheduler, or a given client.

    Args:
        workers: worker processes of a new local cluster (default: the CPU count; with
            ``device="cuda"``: one per GPU). Ignored when joining ``scheduler``.
        scheduler: address of a running scheduler (``tcp://10.0.0.5:8786``) to join instead.
        device: ``"cuda"``: one single-threaded worker per visible GPU; a task asking for
            ``"cuda"`` runs on its worker's GPU (:func:`worker_device`).
        processes: worker processes (True) or threads of this process (False, for tests).
        client: an existing ``distributed.Client`` to use (not closed by :meth:`close`).
    """

    kind = "dask"

    def __init__(
        self,
        workers: int | None = None,
        *,
        scheduler: str | None = None,
        device: str | torch.device = "cpu",
        processes: bool = True,
        client: Any = None,
    ):
        distributed = require_distributed()
        self._cluster = None
        self._own_client = client is None
        if workers is not None and workers < 1:
            raise InputError(f"--workers must be >= 1 (got {workers})")
        if client is not None:
            self.client = client
        elif scheduler is not None:
            self.client = distributed.Client(scheduler)
        else:
            self._cluster = self._local_cluster(distributed, workers, device, processes)
            self.client = distributed.Client(self._cluster)
        self.workers = max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})))
        self.scheduler = scheduler

    @staticmethod
    def _local_cluster(distributed: Any, workers: int | None, device: Any, processes: bool) -> Any:
        gpus = torch.cuda.device_count() if torch.device(device).type == "cuda" else 0
        if gpus:
            n = gpus
        else:
            n = workers if workers is not None else max(1, os.cpu_count() or 1)
        before = dict(os.environ)
        try:
            # the scheduler's and workers' HTTP servers start even without a dashboard, on
            # every interface unless told otherwise: pin them to a free loopback port
            loopback_http = f"{LOCAL_HOST}:0"
            return distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=processes,
                host=LOCAL_HOST if processes else None,
                protocol=None if processes else "inproc://",
                dashboard_address=loopback_http,
                worker_dashboard_address=loopback_http,
                scheduler_kwargs={"dashboard": False},
                silence_logs=40,
            )
        finally:
            _restore_environment(before)

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        progress: bool = False,
        desc: str = "tasks",
    ) -> list[R]:
        from distributed import as_completed

        items = list(items)
        if not items:
            return []
        futures: Sequence[Any] = self.client.map(fn, items, pure=False)
        bar = _bar(len(items), desc, progress)
        with bar:
            for future in as_completed(futures):
                if future.status == "error":
                    error = future.exception()  # the worker's exception, raised here
                    self.client.cancel(futures)
                    raise error
                bar.update(1)
        return self.client.gather(futures)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.client is not None:
            info["scheduler"] = self.scheduler or self.client.scheduler.address
        return info

    def close(self) -> None:
        if self._own_client and self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = None
        self._cluster = None


def check_executor_options(kind: str, workers: int | None, scheduler: str | None) -> None:
    """Raise :class:`InputError` for options :func:`make_executor` refuses (before any work)."""
    if kind not in EXECUTORS:
        raise InputError(f"unknown executor {kind!r}: use one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1 (got {workers})")
    if kind == "inprocess":
        for flag, value in (("--scheduler", scheduler), ("--workers", workers)):
            if value is not None and value != 1:
                raise InputError(f"{flag} {value} needs --executor dask (got --executor inprocess)")


def make_executor(
    kind: str = "inprocess",
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    device: str | torch.device = "cpu",
    processes: bool = True,
) -> Executor:
    """The executor ``kind`` (``"inprocess"`` or ``"dask"``).

    Args:
        kind: ``inprocess`` (default, sequential here) or ``dask``.
        workers: Dask workers of a new local cluster (see :class:`DaskExecutor`).
        scheduler: join the running Dask scheduler at this address instead.
        device: ``cuda`` with Dask: one worker per GPU.
        processes: Dask workers as processes (default) or threads.

    Returns:
        An :class:`Executor`; use it as a context manager so its workers are released.

    Raises:
        InputError: unknown kind, ``workers < 1``, options of Dask given without Dask, or Dask
            not installed (the message names ``pip install 'leafscope[dask]'``).

    Examples:
        >>> with make_executor("inprocess") as ex:
        ...     ex.map(abs, [-1, 2, -3])
        [1, 2, 3]
    """
    check_executor_options(kind, workers, scheduler)
    if kind == "inprocess":
        return InProcessExecutor()
    return DaskExecutor(workers, scheduler=scheduler, device=device, processes=processes)
