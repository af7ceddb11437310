"""The floating-point dtypes leafscope computes in, and their names at the CLI/JSON boundary.

Library functions and settings take a :class:`torch.dtype` (``torch.float32`` or
``torch.float64``). Strings such as ``"float64"`` appear only where text comes in or goes out:
``--dtype`` options (:func:`dtype_from_name`) and JSON files (:func:`dtype_name`).
"""

from __future__ import annotations

import torch

from leafscope.errors import InputError

__all__ = ["DTYPES", "check_dtype", "dtype_from_name", "dtype_name"]

# name -> dtype of the supported computation dtypes (the ``--dtype`` choices).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def check_dtype(dtype: torch.dtype, what: str = "dtype") -> torch.dtype:
    """Return ``dtype`` if it is ``torch.float32`` or ``torch.float64``.

    Raises:
        InputError: another dtype, or a string (names are converted only at the CLI/JSON
            boundary with :func:`dtype_from_name`).
    """
    if isinstance(dtype, str):
        hint = f"torch.{dtype}" if dtype in DTYPES else "torch.float32 or torch.float64"
        raise InputError(
            f"{what} must be a torch.dtype, not the string {dtype!r}: pass {hint} "
            "(convert names with leafscope.dtypes.dtype_from_name)"
        )
    if dtype not in DTYPES.values():
        raise InputError(f"{what} must be torch.float32 or torch.float64 (got {dtype!r})")
    return dtype


def dtype_from_name(name: str | torch.dtype) -> torch.dtype:
    """``"float32"`` / ``"float64"`` (from a command line or a JSON file) → the torch dtype.

    A torch dtype passes through :func:`check_dtype`, so JSON read back from an older file and
    in-memory values both work.

    Raises:
        InputError: an unknown name (the message lists the choices).
    """
    if isinstance(name, torch.dtype):
        return check_dtype(name)
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}: use one of {', '.join(sorted(DTYPES))}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The JSON name of a torch dtype: ``torch.float64`` → ``"float64"``."""
    return str(dtype).removeprefix("torch.")
