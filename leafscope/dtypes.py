"""The floating-point dtypes leafscope computes in, and their names at the CLI/JSON boundary.

Library functions and settings take a :class:`torch.dtype` (``torch.float32`` or
``torch.float64``). Strings such as ``"float64"`` appear only where text comes in or goes out:
``--dtype`` options (:func:`dtype_from_name`) and JSON files (:func:`dtype_name`).

Low precision (``bfloat16``, ``float16``) is a *compute* dtype of the information matrices only
(:data:`COMPUTE_DTYPES`): the model's forward and the Jacobian products run in it, while the
factor's C×C Gram, its eigenproblem, traces and norms are accumulated in
:func:`accumulation_dtype` (float32; float64 for float64).
"""

from __future__ import annotations

import torch

from leafscope.errors import InputError

__all__ = [
    "COMPUTE_DTYPES",
    "DTYPES",
    "LOW_PRECISION",
    "accumulation_dtype",
    "check_compute_dtype",
    "check_dtype",
    "dtype_from_name",
    "dtype_name",
]

# name -> dtype of the supported computation dtypes (the ``--dtype`` choices).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
#: Low-precision compute dtypes of the information matrices (forward and Jacobian products).
LOW_PRECISION: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: Every compute dtype of G (``spectrum --dtype``): low precision, then full precision.
COMPUTE_DTYPES: dict[str, torch.dtype] = {**LOW_PRECISION, **DTYPES}


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Where products computed in ``dtype`` are accumulated: float64 for float64, else float32.

    Examples:
        >>> accumulation_dtype(torch.bfloat16), accumulation_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_compute_dtype(dtype: torch.dtype, what: str = "dtype") -> torch.dtype:
    """Return ``dtype`` if it is one of :data:`COMPUTE_DTYPES` (float32, float64, bfloat16,
    float16).

    Raises:
        InputError: another dtype, or a string.
    """
    if isinstance(dtype, str):
        hint = f"torch.{dtype}" if dtype in COMPUTE_DTYPES else "e.g. torch.float64"
        raise InputError(
            f"{what} must be a torch.dtype, not the string {dtype!r}: pass {hint} "
            "(convert names with leafscope.dtypes.dtype_from_name)"
        )
    if dtype not in COMPUTE_DTYPES.values():
        names = ", ".join(f"torch.{n}" for n in COMPUTE_DTYPES)
        raise InputError(f"{what} must be one of {names} (got {dtype!r})")
    return dtype


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


def dtype_from_name(name: str | torch.dtype, *, low_precision: bool = False) -> torch.dtype:
    """``"float32"`` / ``"float64"`` (from a command line or a JSON file) → the torch dtype;
    with ``low_precision`` also ``"bfloat16"`` / ``"float16"``.

    A torch dtype passes through :func:`check_dtype`, so JSON read back from an older file and
    in-memory values both work.

    Raises:
        InputError: an unknown name (the message lists the choices).
    """
    choices = COMPUTE_DTYPES if low_precision else DTYPES
    if isinstance(name, torch.dtype):
        return check_compute_dtype(name) if low_precision else check_dtype(name)
    if name not in choices:
        raise InputError(f"unknown dtype {name!r}: use one of {', '.join(sorted(choices))}")
    return choices[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The JSON name of a torch dtype: ``torch.float64`` → ``"float64"``."""
    return str(dtype).removeprefix("torch.")
