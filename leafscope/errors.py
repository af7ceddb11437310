"""The package's error types: one template, one catch in the CLI.

Every message names the bad value and says how to fix it, e.g.
``InputError("inputs contain NaN at sample 3: clean or drop those samples")``.
"""

from __future__ import annotations

from typing import Any


class LeafscopeError(Exception):
    """Base class of every error leafscope raises on purpose (the CLI prints these in one line)."""


class InputError(LeafscopeError, ValueError):
    """A user-supplied value (tensor, model, argument) is invalid."""


class DataFileError(LeafscopeError, OSError):
    """A data file is missing, truncated or corrupt, or cannot be downloaded."""


class CheckpointError(LeafscopeError, OSError):
    """A checkpoint cannot be read or does not describe a known model."""


class NotFittedError(LeafscopeError, AttributeError):
    """An estimator was used before ``fit``."""


def check_positive_int(value: Any, what: str, hint: str = "") -> int:
    """Return ``value`` when it is an integer ≥ 1 (not a bool), else raise :class:`InputError`
    naming ``what``; ``hint`` (e.g. ``"; e.g. 3"``) is appended to the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be an integer >= 1 (got {value!r}){hint}")
    return value
