"""What the per-unit jobs of the experiments (one task per seed, per checkpoint and layer) share:
data sources rebuilt on the worker, a lock around seeded sections, and the executor default.

A task carries a :class:`Source` (a top-level function and its small, hashable arguments)
instead of tensors; the worker calls it once per process (:func:`leafscope.execution.cached`).
Each task also runs at this process's torch thread count (see :class:`_Unit`). A library
caller who passes tensors gets them wrapped as they are (fine in process; on a remote
cluster pass sources). Seeded training sets torch's *global* generator
(``torch.manual_seed``); :func:`seeded` serialises such sections across threads of one process
(a threaded Dask cluster), so every executor gives the numbers of a sequential run;
:func:`exclusive` does the same for a model shared by the threads (hooks are per module).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Source", "exclusive", "map_units", "resolve", "seeded"]

T = TypeVar("T")
R = TypeVar("R")
_SEEDED = threading.RLock()
_LOCKS: dict[int, threading.RLock] = {}


@dataclass(frozen=True)
class Source:
    """``fn(*args)`` evaluated once per process, optionally one element of its result.

    Attributes:
        fn: a top-level (picklable) function.
        args: its positional arguments: plain hashable values (names, paths, counts).
        item: index or key of the part of ``fn(*args)`` wanted (None: all of it); sources
            differing only in ``item`` share one evaluation.
    """

    fn: Callable[..., Any]
    args: tuple = ()
    item: Any = None

    def _key(self) -> tuple:
        return ("source", self.fn.__module__, self.fn.__qualname__, self.args)

    def get(self) -> Any:
        """The value (built on the first call in this process, cached after)."""
        from leafscope.execution import cached

        value = cached(self._key(), lambda: self.fn(*self.args))
        return value if self.item is None else value[self.item]

    def put(self, value: Any) -> None:
        """Make :meth:`get` return (the ``item`` of) ``value`` here: the caller loaded it
        already (``value`` is the whole result of ``fn(*args)``)."""
        from leafscope.execution import put_cached

        put_cached(self._key(), value)

    def part(self, item: Any) -> Source:
        """The same source, selecting ``item`` of its value."""
        return Source(self.fn, self.args, item)


def resolve(value: Any) -> Any:
    """``value.get()`` for a :class:`Source`, else ``value`` itself."""
    return value.get() if isinstance(value, Source) else value


@contextmanager
def seeded() -> Iterator[None]:
    """Hold the process-wide lock of sections that seed and use torch's global generator."""
    with _SEEDED:
        yield


@contextmanager
def exclusive(obj: Any) -> Iterator[None]:
    """Hold the lock of ``obj`` (e.g. a model cached for this process: feature hooks and
    masks must not be set by two threads of a threaded cluster at once)."""
    with _SEEDED:
        lock = _LOCKS.setdefault(id(obj), threading.RLock())
    with lock:
        yield


def map_units(
    executor: Any,
    fn: Callable[[T], R],
    items: Iterable[T],
    desc: str,
    progress: bool | None = None,
) -> list[R]:
    """``executor.map(fn, items)`` (``executor`` None: in this process, one after the other).

    Args:
        executor: a :class:`leafscope.execution.Executor` or None.
        fn: a top-level task function.
        items: small picklable task descriptions.
        desc: what an item is (``"seeds"``), for the progress bar.
        progress: show a bar counting finished items (default: with a Dask executor only).

    Returns:
        ``[fn(item) for item in items]`` in order.
    """
    from leafscope.execution import InProcessExecutor

    if executor is None:
        executor = InProcessExecutor()
    if progress is None:
        progress = executor.kind != "inprocess"
    return executor.map(_Unit(fn), items, progress=progress, desc=desc)


class _Unit:
    """``fn`` run with this process's torch thread count applied to the calling thread too:
    OpenMP/MKL keep their thread count per thread, and a new thread (a threaded Dask worker)
    starts at the machine's default whatever ``torch.set_num_threads`` said, which changes
    float32 reductions in the last digit."""

    def __init__(self, fn: Callable[[T], R]):
        self.fn = fn

    def __call__(self, item: T) -> R:
        import torch

        torch.set_num_threads(torch.get_num_threads())
        return self.fn(item)
