"""What the per-unit jobs of the experiments (one task per seed, per checkpoint and layer) share:
data sources rebuilt on the worker, a lock around seeded sections, and the executor default.

A task carries a :class:`Source` (a top-level function and its small, hashable arguments)
instead of tensors; the worker calls it once per process (:func:`leafscope.execution.cached`).
A library caller who passes tensors gets them wrapped as they are (fine in process; on a remote
cluster pass sources). Seeded training sets torch's *global* generator
(``torch.manual_seed``); :func:`seeded` serialises such sections across threads of one process
(a threaded Dask cluster), so every executor gives the numbers of a sequential run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Source", "map_units", "resolve", "seeded"]

T = TypeVar("T")
R = TypeVar("R")
_SEEDED = threading.RLock()


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


def map_units(executor: Any, fn: Callable[[T], R], items: Iterable[T], desc: str) -> list[R]:
    """``executor.map(fn, items)`` (``executor`` None: in this process, one after the other).

    Args:
        executor: a :class:`leafscope.execution.Executor` or None.
        fn: a top-level task function.
        items: small picklable task descriptions.
        desc: what an item is (``"seeds"``), for the progress bar of a Dask executor.

    Returns:
        ``[fn(item) for item in items]`` in order.
    """
    from leafscope.execution import InProcessExecutor

    if executor is None:
        executor = InProcessExecutor()
    return executor.map(fn, items, progress=executor.kind != "inprocess", desc=desc)
