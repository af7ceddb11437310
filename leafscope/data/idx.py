"""IDX files (the MNIST format), plain or gzip-compressed, with every failure as a DataFileError."""

from __future__ import annotations

import gzip
import os
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from leafscope.errors import DataFileError

# IDX type byte -> big-endian numpy dtype.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or uncompressed, detected from its first bytes).

    Args:
        path: the file.

    Returns:
        A read-only array with the dims of the header (native byte order); cached per
        (path, size, mtime), so repeated loads are cheap.

    Raises:
        DataFileError: unreadable gzip stream, bad magic number, or a size that disagrees with the
            header.
    """
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataFileError(f"cannot read IDX file {path}: {exc.strerror}") from None
    return _read_idx_cached(str(path), stat.st_size, stat.st_mtime_ns)


def open_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file's array without reading it all when possible: a read-only memory map of an
    uncompressed file (its stored big-endian dtype), else :func:`read_idx`.

    Raises:
        DataFileError: as :func:`read_idx`.
    """
    path = Path(path).resolve()
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            if head[:2] == b"\x1f\x8b":
                return read_idx(path)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
                return read_idx(path)  # the error names what is wrong
            raw_dims = handle.read(4 * head[3])
        size = path.stat().st_size
    except OSError as exc:
        raise DataFileError(f"cannot read IDX file {path}: {exc.strerror}") from None
    dtype, ndim = _IDX_TYPES[head[2]], head[3]
    offset = 4 + 4 * ndim
    if len(raw_dims) < 4 * ndim:
        raise DataFileError(f"{path}: IDX header truncated ({size} bytes): re-download it")
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, ">u4", count=ndim))
    expected = offset + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        raise DataFileError(
            f"{path}: IDX header says shape {dims} ({expected} bytes) but the data has "
            f"{size} bytes: the file is truncated or corrupt; re-download it"
        )
    if expected == offset:
        return np.empty(dims, dtype.newbyteorder("="))
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)


@lru_cache(maxsize=8)
def _read_idx_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    del size, mtime_ns  # cache key only
    raw = _read_bytes(Path(path))
    array = parse_idx(raw, source=path)
    array.flags.writeable = False
    return array


def _read_bytes(path: Path) -> bytes:
    fix = "delete it and re-download it, or replace it with a good copy"
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
            handle.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=handle) as stream:
                    return stream.read()
            return handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFileError(
            f"{path} is not a readable gzip file ({type(exc).__name__}: {exc}): {fix}"
        ) from None


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (already decompressed).

    Args:
        raw: the file content.
        source: name used in error messages.

    Returns:
        The array (native byte order).

    Raises:
        DataFileError: bad magic number or a length that disagrees with the header.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataFileError(
            f"{source} is not an IDX file (first bytes {raw[:4].hex() or 'empty'}, expected "
            "00 00 <type> <ndim>): check the file name or re-download it"
        )
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataFileError(f"{source}: IDX header truncated ({len(raw)} bytes): re-download it")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = offset + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFileError(
            f"{source}: IDX header says shape {dims} ({expected} bytes) but the data has "
            f"{len(raw)} bytes: the file is truncated or corrupt; re-download it"
        )
    array = np.frombuffer(raw, dtype, offset=offset).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)
