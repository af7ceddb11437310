"""Checksums and downloads; known files are verified on every load (cached per size/mtime)."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from leafscope.data.registry import FileSpec
from leafscope.errors import DataFileError
from leafscope.io import atomic_write

_CHUNK = 1 << 20
_DIGEST_CACHE: dict[tuple[str, str, int, int], str] = {}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, cached in-process per (path, algorithm, size, mtime).

    Args:
        path: file to hash.
        algorithm: a :mod:`hashlib` name (``sha256`` or ``md5``).

    Returns:
        The lowercase hex digest.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), algorithm, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGEST_CACHE:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
        _DIGEST_CACHE[key] = digest.hexdigest()
    return _DIGEST_CACHE[key]


def expected_digest(spec: FileSpec) -> tuple[str, str] | None:
    """The strongest known digest of ``spec`` as ``(algorithm, hex)``, or ``None``."""
    if spec.sha256:
        return "sha256", spec.sha256
    if spec.md5:
        return "md5", spec.md5
    return None


def verify_file(path: str | os.PathLike, spec: FileSpec) -> Path:
    """Check ``path`` against the checksum of ``spec``.

    Returns:
        ``path`` as a :class:`Path` when it matches (or no checksum is known).

    Raises:
        DataFileError: the digest differs (truncated or corrupt file); names both digests.
    """
    path = Path(path)
    want = expected_digest(spec)
    if want is None:
        return path
    algorithm, expected = want
    actual = file_digest(path, algorithm)
    if actual != expected:
        size = path.stat().st_size
        size_note = f" ({size} bytes, expected {spec.size})" if spec.size else f" ({size} bytes)"
        raise DataFileError(
            f"data file {path} is corrupt or truncated{size_note}: {algorithm} {actual}, "
            f"expected {expected}. Fix: delete {path} (it will be re-downloaded) or replace it "
            "with a good copy"
        )
    return path


def download_file(spec: FileSpec, dest: Path, base_urls: list[str]) -> Path:
    """Download ``spec.name`` into ``dest`` from the first base URL that serves a verified copy.

    The bytes go to a temporary file in ``dest``'s folder (:func:`leafscope.io.atomic_write`), are
    hashed while streaming, and are moved into place only when the checksum matches: nothing
    partial is left.

    Args:
        spec: the file (its checksum decides acceptance; files without one are refused).
        dest: final path of the file.
        base_urls: mirrors; the URL is ``base + spec.name``.

    Returns:
        ``dest``.

    Raises:
        DataFileError: no mirror gave a verified copy (the message lists each attempt).
    """
    want = expected_digest(spec)
    if want is None:
        raise DataFileError(
            f"{spec.name} has no known checksum, so it is never downloaded: copy it by hand into "
            f"{dest.parent}"
        )
    if not base_urls:
        raise DataFileError(f"no download mirror is known for {spec.name}")
    algorithm, expected = want
    failures = []
    for base in base_urls:
        url = base if base.endswith(spec.name) else base.rstrip("/") + "/" + spec.name
        try:
            _fetch(url, dest, algorithm, expected, spec.size)
            return dest
        except DataFileError as exc:
            failures.append(f"{url}: {exc}")
        except (OSError, ValueError) as exc:  # URLError is an OSError
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
    raise DataFileError("download failed: " + "; ".join(failures))


def _fetch(url: str, dest: Path, algorithm: str, expected: str, size: int | None) -> None:
    def stream(out) -> None:
        digest = hashlib.new(algorithm)
        with urllib.request.urlopen(url, timeout=60) as response:
            headers = getattr(response, "headers", None)
            total = headers.get("Content-Length") if headers is not None else None
            total = int(total) if total else size
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        actual = digest.hexdigest()
        if actual != expected:
            raise DataFileError(f"served bytes have {algorithm} {actual}, expected {expected}")

    atomic_write(dest, stream)
