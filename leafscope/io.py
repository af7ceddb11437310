"""Atomic file output shared by training, reports and commands.

Every file leafscope writes goes through :func:`atomic_write`: the content is written to a
temporary file in the destination folder, flushed and ``fsync``-ed, renamed over the destination
with ``os.replace`` (atomic on POSIX and Windows), and the folder is ``fsync``-ed where the
platform allows it. An interrupted job (crash, Ctrl-C, full disk, power loss) therefore leaves
either the old file or the complete new one, never a half-written file. New files get the
usual permissions of the process (``0o666`` minus the umask, e.g. 0644), not the 0600 of
:func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from leafscope.dtypes import dtype_name

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "to_jsonable",
    "torch_save_atomic",
    "write_json",
    "write_npz",
]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _open_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """Create a new, empty temporary file next to ``name`` with mode ``0o666 & ~umask``."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder}")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file atomically: ``write(handle)`` fills a temporary file, which then replaces
    ``path``.

    Args:
        path: destination; its folder is created.
        write: called once with a binary file handle open for writing (e.g.
            ``lambda f: np.savez(f, a=a)``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`. If ``write`` or the disk fails, the temporary file
        is removed and an older file at ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def torch_save_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """``numpy.savez_compressed(**arrays)`` to ``path`` atomically (see :func:`atomic_write`)."""
    import numpy as np

    return atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def to_jsonable(value: Any) -> Any:
    """``json.dump`` fallback: tensors and arrays become lists, result objects their
    ``to_json()``, paths and devices strings, dtypes their names (``"float64"``)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, torch.dtype):
        return dtype_name(value)
    if isinstance(value, (Path, torch.device)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=to_jsonable) + "\n")
