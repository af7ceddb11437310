"""Executors: run one top-level function over many items, in this process or on a Dask cluster.

The contract every job relies on (spectrum shards, OOD shards, NNK chunks):
``executor.map(fn, items)`` returns ``[fn(item) for item in items]``, in the order of ``items``,
whatever the executor. ``fn`` must be a top-level (picklable) function and each item a small
picklable description of the work (indices, a model spec), never a large tensor: workers load
the model and data once each (see :mod:`leafscope.execution.cache`).

A Dask cluster started here binds to ``127.0.0.1`` only (its comms, and the HTTP servers that
scheduler and workers start even with the dashboard off); joining an
existing cluster (``scheduler="tcp://host:8786"``) uses whatever that cluster exposes.

Clusters fail loudly, in one :class:`~leafscope.errors.InputError` line each: a malformed
scheduler address (before any connection), a scheduler that refuses the connection (at once) or
does not answer within ``connect_timeout``, a scheduler without workers (after waiting
``connect_timeout`` for the first one), and a worker lost while it runs a task (killed for
memory, or dead): the message names the task, the workers' memory limit and what to lower.

Torch threads: each Dask worker process runs its tasks with ``threads`` torch threads (default
1, as the local cluster's one thread per worker), so results are bitwise equal to an in-process
run at the same thread count.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
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
    "check_scheduler_address",
    "make_executor",
    "gpu_for_worker",
    "require_distributed",
    "worker_device",
]

EXECUTORS = ("inprocess", "dask")
LOCAL_HOST = "127.0.0.1"
DEFAULT_CONNECT_TIMEOUT = 30.0
ADDRESS_EXAMPLE = "tcp://10.0.0.5:8786"

_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?)"
_HOST_PORT = re.compile(rf"(?:(?P<scheme>tcp|tls)://)?(?P<host>{_HOST}):(?P<port>[0-9]{{1,5}})")
_INPROC = re.compile(r"inproc://\S+")
_POLL_S = 0.05  # how often map looks for finished tasks
_WORKER_CHECK_S = 1.0  # how often map checks that the cluster still has workers
_KILLED_SETTLE_S = 0.2  # wait for the other tasks a dead worker held to be marked failed

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
    """Runs every item here, one after the other (the default: no cluster, no dependency).

    Args:
        threads: torch threads while :meth:`map` runs (restored afterwards); ``None`` (default)
            keeps this process's setting.
    """

    kind = "inprocess"
    workers = 1

    def __init__(self, threads: int | None = None):
        self.threads = _check_threads(threads)

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
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            with bar:
                for item in items:
                    results.append(fn(item))
                    bar.update(1)
        finally:
            if self.threads is not None:
                torch.set_num_threads(before)
        return results

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.threads is not None:
            info["threads"] = self.threads
        return info


def _check_threads(threads: int | None) -> int | None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
        raise InputError(f"threads must be an integer >= 1 or None (got {threads!r})")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1 (got {threads})")
    return threads


def _check_timeout(connect_timeout: float) -> float:
    try:
        value = float(connect_timeout)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise InputError(
            f"connect_timeout must be a number of seconds > 0 (got {connect_timeout!r})"
        )
    return value


def check_scheduler_address(address: str) -> tuple[str, str | None, int | None]:
    """Split a Dask scheduler address into ``(scheme, host, port)`` without connecting.

    Accepted: ``tcp://HOST:PORT``, ``tls://HOST:PORT``, ``HOST:PORT`` (tcp) and ``inproc://...``
    (``host`` and ``port`` are then ``None``); an IPv6 host is written in brackets.

    Raises:
        InputError: anything else, naming the address and a valid example.

    Examples:
        >>> check_scheduler_address("tcp://10.0.0.5:8786")
        ('tcp', '10.0.0.5', 8786)
        >>> check_scheduler_address("node7:8786")
        ('tcp', 'node7', 8786)
    """
    text = address.strip() if isinstance(address, str) else ""
    if _INPROC.fullmatch(text):
        return "inproc", None, None
    match = _HOST_PORT.fullmatch(text)
    if match and 1 <= int(match["port"]) <= 65535:
        return match["scheme"] or "tcp", match["host"], int(match["port"])
    raise InputError(
        f"scheduler address {address!r} is not valid: expected tcp://HOST:PORT "
        f"(e.g. {ADDRESS_EXAMPLE}), tls://HOST:PORT, HOST:PORT or inproc://..."
    )


def _probe_scheduler(address: str, host: str, port: int, timeout: float) -> None:
    """Open and close a plain TCP connection to the scheduler's port: a refused connection, an
    unknown host or silence fail here at once (Dask itself would retry until its timeout)."""
    name = host[1:-1] if host.startswith("[") else host
    try:
        with socket.create_connection((name, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise InputError(
            f"no scheduler at {address}: the connection was refused "
            "(is a Dask scheduler running there, on that port?)"
        ) from None
    except socket.gaierror as exc:
        raise InputError(
            f"cannot reach the scheduler at {address}: unknown host {name!r} ({exc.strerror})"
        ) from None
    except TimeoutError:
        raise InputError(
            f"cannot reach the scheduler at {address}: no answer within the "
            f"{timeout:g} s connect timeout (check the address and the firewall)"
        ) from None
    except OSError as exc:
        raise InputError(
            f"cannot reach the scheduler at {address}: {exc.strerror or exc}"
        ) from None


def _handshake(address: str, left: float, timeout: float) -> None:
    """Connect to ``address`` as Dask does and close again, within ``left`` seconds: a server
    that accepts TCP but never answers Dask's handshake (another service's port, a stuck
    scheduler) would otherwise hang ``distributed.Client`` for ever. Runs on its own event
    loop in its own thread, so that it works under a running loop (Jupyter) too."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect
    from distributed.security import Security

    args = Security().get_connection_args("client")

    async def attempt() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=left, **args), left)
        await comm.close()

    with ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(asyncio.run, attempt()).result()
        except TimeoutError:
            raise InputError(
                f"the server at {address} accepted the connection but did not answer as a Dask "
                f"scheduler within the {timeout:g} s connect timeout (is that the scheduler's "
                "port?)"
            ) from None
        except OSError as exc:
            raise InputError(
                f"cannot connect to the scheduler at {address} within the {timeout:g} s "
                f"connect timeout: {_first_line(exc)}"
            ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _task_name(fn: Any) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return re.sub(r"[^A-Za-z0-9_.]", "_", str(name)) or "task"


class _TorchThreads:
    """``fn`` run with ``threads`` torch threads in the thread that runs it (torch's thread
    count is per thread once used, so it is set there, not once per worker).

    ``skip`` is the ``(host, pid)`` of the process that made the executor when ``threads`` was
    not asked for: workers that are threads of that process leave its setting alone.
    """

    def __init__(self, fn: Callable[[Any], Any], threads: int, skip: tuple[str, int] | None):
        self.fn, self.threads, self.skip = fn, threads, skip

    def __call__(self, item: Any) -> Any:
        if self.skip != (socket.gethostname(), os.getpid()):
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
        return self.fn(item)


def require_distributed() -> Any:
    """Import :mod:`distributed` or raise one clear :class:`InputError` naming the extra."""
    try:
        import distributed
    except ImportError as exc:
        raise InputError(
            "`executor=dask` needs dask.distributed, which is not installed: "
            "pip install 'leafscope[dask]' (or use `executor=inprocess`)"
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
        connect_timeout: seconds to wait for ``scheduler`` to answer and for its first worker
            (one budget for both); a refused connection fails at once.
        threads: torch threads per worker process (default 1). Workers that are threads of
            this process (``processes=False``) leave its setting alone unless ``threads`` is
            given.

    Raises:
        InputError: ``workers < 1``, a malformed scheduler address, a scheduler that refuses
            or does not answer, or one without workers (one line each, no traceback to read).
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
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        threads: int | None = None,
    ):
        if workers is not None and workers < 1:
            raise InputError(f"workers must be >= 1 (got {workers})")
        self.connect_timeout = _check_timeout(connect_timeout)
        self.threads = _check_threads(threads)
        if scheduler is not None and client is None:
            check_scheduler_address(scheduler)  # before importing or connecting anything
        distributed = require_distributed()
        self._cluster = None
        self._own_client = client is None
        self.client = None
        self.scheduler = scheduler.strip() if scheduler is not None else None
        try:
            if client is not None:
                self.client = client
            elif scheduler is not None:
                self.client = self._join(distributed, scheduler, self.connect_timeout)
            else:
                self._cluster = self._local_cluster(distributed, workers, device, processes)
                self.client = distributed.Client(self._cluster)
            info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        except BaseException:
            self.close()
            raise
        self.workers = max(1, len(info))
        self._memory_limits = _memory_limits(info)

    @staticmethod
    def _join(distributed: Any, address: str, timeout: float) -> Any:
        """A client of the scheduler at ``address`` that has at least one worker, within
        ``timeout`` seconds in all, or one :class:`InputError` line."""
        deadline = time.monotonic() + timeout
        _, host, port = check_scheduler_address(address)
        address = address.strip()
        if host is not None and port is not None:
            _probe_scheduler(address, host, port, timeout)
            _handshake(address, max(deadline - time.monotonic(), 0.1), timeout)
        try:
            client = distributed.Client(address, timeout=max(deadline - time.monotonic(), 0.1))
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"cannot connect to the scheduler at {address} within the {timeout:g} s "
                f"connect timeout: {_first_line(exc)}"
            ) from None
        try:
            client.wait_for_workers(1, timeout=max(deadline - time.monotonic(), 0.1))
        except (OSError, TimeoutError):
            client.close()
            raise InputError(
                f"the scheduler at {address} has no workers: none joined within the "
                f"{timeout:g} s connect timeout (start workers for it, e.g. "
                f"`dask worker {address}`, or wait longer)"
            ) from None
        except BaseException:
            client.close()
            raise
        return client

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
        name = _task_name(fn)
        skip = None if self.threads is not None else (socket.gethostname(), os.getpid())
        call = _TorchThreads(fn, self.threads or 1, skip)
        token = os.urandom(8).hex()
        keys = [f"{name}-{i}-{token}" for i in range(len(items))]
        item_of = dict(zip(keys, items, strict=True))
        futures: Sequence[Any] = self.client.map(call, items, key=keys, pure=False)
        done = as_completed(futures)
        bar = _bar(len(items), desc, progress)
        no_workers_since: float | None = None
        next_check = time.monotonic() + _WORKER_CHECK_S
        try:
            with bar:
                while not done.is_empty():
                    batch = done.next_batch(block=False)
                    for future in batch:
                        if future.status == "error":
                            raise self._task_error(future, name, futures, item_of)
                        if future.status == "cancelled":
                            raise self._cancelled_error(future, name, item_of.get(future.key))
                        bar.update(1)
                    if batch:
                        continue
                    time.sleep(_POLL_S)
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + _WORKER_CHECK_S
                        no_workers_since = self._check_workers(
                            no_workers_since, name, futures, item_of
                        )
        except BaseException:
            with contextlib.suppress(Exception):  # a lost scheduler cannot cancel anything
                self.client.cancel(futures)
            raise
        return self.client.gather(futures)

    def _check_workers(
        self, since: float | None, name: str, futures: Sequence[Any], item_of: dict[Any, Any]
    ) -> float | None:
        """Raise when the cluster has had no worker for ``connect_timeout`` seconds while tasks
        wait (a worker that died and was not replaced); return when that began, if it did."""
        try:
            count = len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except (OSError, TimeoutError):
            return since  # the scheduler is busy or reconnecting: the futures will tell
        if count:
            return None
        now = time.monotonic()
        if since is None:
            return now
        if now - since < self.connect_timeout:
            return since
        waiting = next((f for f in futures if f.status == "pending"), None)
        task = _describe_tasks(
            name, [] if waiting is None else [(waiting.key, item_of.get(waiting.key))]
        )
        raise InputError(
            f"the Dask cluster at {self._address()} lost all its workers: none for "
            f"{self.connect_timeout:g} s while {task} waits (a worker died, e.g. killed for "
            f"memory; {self._memory_text()}); {_LOWER}"
        )

    def _task_error(
        self, future: Any, name: str, futures: Sequence[Any], item_of: dict[Any, Any]
    ) -> BaseException:
        """The exception to raise for a failed future: the task's own, or one line when its
        worker died under it (naming every task that died with it: Dask marks all the tasks
        the worker held, and cannot tell which one it was running)."""
        from distributed.scheduler import KilledWorker

        error = future.exception()  # the worker's exception, raised here
        if not isinstance(error, KilledWorker):
            return error
        time.sleep(_KILLED_SETTLE_S)  # the scheduler marks a dead worker's tasks together
        killed = [future]
        for other in futures:
            if other is not future and other.status == "error":
                if isinstance(other.exception(), KilledWorker):
                    killed.append(other)
        order = {key: i for i, key in enumerate(item_of)}
        killed.sort(key=lambda f: order.get(f.key, 0))
        worker = getattr(getattr(error, "last_worker", None), "address", None)
        self._memory_limits = self._current_memory_limits() or self._memory_limits
        tries = getattr(error, "allowed_failures", 0) + 1
        one = len(killed) == 1
        tasks = _describe_tasks(name, [(f.key, item_of.get(f.key)) for f in killed])
        what = "it" if one else "one of them"
        times = "" if tries == 1 else f" ({tries} workers in turn)"
        return InputError(
            f"{tasks} lost {'its' if one else 'their'} worker"
            f"{f' {worker}' if worker else ''}: the worker died while running {what}{times}, "
            f"most likely killed for using too much memory ({self._memory_text()}); {_LOWER}"
        )

    def _cancelled_error(self, future: Any, name: str, item: Any) -> InputError:
        return InputError(
            f"{_describe_tasks(name, [(future.key, item)])} was cancelled by the Dask cluster at "
            f"{self._address()} (the connection to the scheduler was lost, or the scheduler "
            "restarted): check that the scheduler is still running and run again"
        )

    def _current_memory_limits(self) -> list[int]:
        try:
            return _memory_limits(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except Exception:  # noqa: BLE001 - only for a better message; keep the cached limits
            return []

    def _memory_text(self) -> str:
        from dask.utils import format_bytes

        limits = self._memory_limits
        if not limits:
            return "the workers' memory limit is unknown or unset"
        low, high = min(limits), max(limits)
        if low == high:
            return f"each worker has a {format_bytes(low)} memory limit"
        return f"workers have memory limits from {format_bytes(low)} to {format_bytes(high)}"

    def _address(self) -> str:
        if self.scheduler:
            return self.scheduler
        try:
            return str(self.client.scheduler.address)
        except AttributeError:
            return "(unknown address)"

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.client is not None:
            info["scheduler"] = self.scheduler or self.client.scheduler.address
        info["threads"] = self.threads if self.threads is not None else 1
        return info

    def close(self) -> None:
        if self._own_client and self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = None
        self._cluster = None


_LOWER = (
    "lower the memory one task needs (fewer points per batch or a smaller memory budget), "
    "run fewer workers per machine, or give each worker a larger memory limit"
)


def _memory_limits(workers: dict[str, Any]) -> list[int]:
    limits = [w.get("memory_limit") for w in workers.values() if isinstance(w, dict)]
    return [int(m) for m in limits if m]


def _describe_tasks(name: str, tasks: Sequence[tuple[Any, Any]], most: int = 4) -> str:
    """``task run_shard (shard 3, key 'run_shard-3-…')`` or ``tasks run_shard (shards 2, 3;
    keys …)``: the function, the items' shards when they have them, and the Dask keys."""
    shards = [getattr(item, "shard", None) for _, item in tasks]
    keys = [repr(key) for key, _ in tasks if key is not None]
    more = ", ..." if len(tasks) > most else ""
    parts = []
    if all(s is not None for s in shards):
        word = "shard" if len(shards) == 1 else "shards"
        parts.append(f"{word} {', '.join(str(s) for s in shards[:most])}{more}")
    if keys:
        word = "key" if len(keys) == 1 else "keys"
        parts.append(f"{word} {', '.join(keys[:most])}{more}")
    noun = "task" if len(tasks) == 1 else "tasks"
    return f"{noun} {name}" + (f" ({'; '.join(parts)})" if parts else "")


def check_executor_options(kind: str, workers: int | None, scheduler: str | None) -> None:
    """Raise :class:`InputError` for options :func:`make_executor` refuses (before any work),
    a malformed scheduler address included (no connection is tried here)."""
    if kind not in EXECUTORS:
        raise InputError(f"unknown executor {kind!r}: use one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InputError(f"`workers` must be >= 1 (got {workers})")
    if kind == "inprocess":
        for name, value in (("scheduler", scheduler), ("workers", workers)):
            if value is not None and value != 1:
                raise InputError(
                    f"`{name}={value}` needs `executor=dask` (got `executor=inprocess`)"
                )
    elif scheduler is not None:
        check_scheduler_address(scheduler)


def make_executor(
    kind: str = "inprocess",
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    device: str | torch.device = "cpu",
    processes: bool = True,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    threads: int | None = None,
) -> Executor:
    """The executor ``kind`` (``"inprocess"`` or ``"dask"``).

    Args:
        kind: ``inprocess`` (default, sequential here) or ``dask``.
        workers: Dask workers of a new local cluster (see :class:`DaskExecutor`).
        scheduler: join the running Dask scheduler at this address instead.
        device: ``cuda`` with Dask: one worker per GPU.
        processes: Dask workers as processes (default) or threads.
        connect_timeout: seconds to wait for ``scheduler`` and its first worker.
        threads: torch threads per worker process (Dask: default 1; in process: default
            unchanged).

    Returns:
        An :class:`Executor`; use it as a context manager so its workers are released.

    Raises:
        InputError: unknown kind, ``workers < 1``, options of Dask given without Dask, Dask
            not installed (the message names ``pip install 'leafscope[dask]'``), a malformed
            or unreachable scheduler address, or a scheduler without workers.

    Examples:
        >>> with make_executor("inprocess") as ex:
        ...     ex.map(abs, [-1, 2, -3])
        [1, 2, 3]
    """
    check_executor_options(kind, workers, scheduler)
    connect_timeout = _check_timeout(connect_timeout)
    threads = _check_threads(threads)
    if kind == "inprocess":
        return InProcessExecutor(threads=threads)
    return DaskExecutor(
        workers,
        scheduler=scheduler,
        device=device,
        processes=processes,
        connect_timeout=connect_timeout,
        threads=threads,
    )
