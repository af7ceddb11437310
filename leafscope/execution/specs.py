"""A per-process cache of loaded models and data sets.

A shard carries the :class:`leafscope.models.ModelSpec` and :class:`leafscope.data.DataSpec`
of its job (a few strings) and the positions of its units, never tensors. Each worker process
loads the model and opens the data once (:func:`cached`) and keeps them for its next shards.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["CACHE_SIZE", "cached", "clear_cache", "put_cached"]

CACHE_SIZE = 4  # loaded models / data sets a worker keeps

T = TypeVar("T")
_CACHE: OrderedDict[Hashable, Any] = OrderedDict()
_LOCK = threading.RLock()


def cached(key: Hashable, build: Callable[[], T]) -> T:
    """The value cached under ``key`` in this process, built with ``build()`` the first time
    (the last :data:`CACHE_SIZE` keys are kept; thread-safe)."""
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        value = build()
        put_cached(key, value)
        return value


def put_cached(key: Hashable, value: Any) -> None:
    """Store ``value`` under ``key`` (e.g. a model a caller already loaded)."""
    with _LOCK:
        _CACHE[key] = value
        _CACHE.move_to_end(key)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)


def clear_cache() -> None:
    """Forget every cached model and data set of this process."""
    with _LOCK:
        _CACHE.clear()
