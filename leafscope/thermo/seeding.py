"""Seeded units that draw from the process-wide random generators.

Training one seed draws from torch's global generator (the initialisation, dropout masks, and,
for link prediction, PyG's ``RandomLinkSplit`` and the non-edges resampled at every step) and
from Python's ``random`` (PyG's held-out non-edges). Two such units run by two threads of one
process (a threaded Dask worker) would draw from the same generators in an interleaved order,
and their rows would depend on timing. :func:`holds_global_rng` makes a seed function hold one
process-wide lock while it runs, so a threaded run gives the rows of a sequential one to the
last bit (units in separate processes never shared the generators).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["holds_global_rng"]

F = TypeVar("F", bound=Callable)

#: Held by every unit that seeds and draws from the global generators (re-entrant).
GLOBAL_RNG_LOCK = threading.RLock()


def holds_global_rng(fn: F) -> F:
    """Run ``fn`` holding :data:`GLOBAL_RNG_LOCK` (seed functions of the thermo experiments)."""

    @functools.wraps(fn)
    def locked(*args, **kwargs):
        with GLOBAL_RNG_LOCK:
            return fn(*args, **kwargs)

    return locked  # type: ignore[return-value]
