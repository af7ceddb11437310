"""Where data files are looked for, and :func:`locate` (find, verify, or download a known file)."""

from __future__ import annotations

import os
from pathlib import Path

from leafscope.data import download as _download
from leafscope.data import registry
from leafscope.data.registry import DatasetSpec
from leafscope.errors import DataFileError


def cache_dir() -> Path:
    """Download folder: ``$XDG_CACHE_HOME/leafscope``, else ``~/.cache/leafscope``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "leafscope"


def data_search_path(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The data roots searched, in order (duplicates removed; folders need not exist).

    Order: ``data_dir``; each entry of ``$LEAFSCOPE_DATA`` (``os.pathsep``-separated); the user
    cache folder; ``../shared/data`` relative to the current directory; ``shared/data`` beside the
    repository root.

    Args:
        data_dir: an explicit folder, searched first.

    Returns:
        Absolute folder paths.
    """
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    env = os.environ.get("LEAFSCOPE_DATA", "")
    roots.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    roots.append(cache_dir())
    roots.extend(_shared_roots())
    unique: list[Path] = []
    for root in roots:
        root = Path(os.path.abspath(root))
        if root not in unique:
            unique.append(root)
    return unique


def _shared_roots() -> list[Path]:
    """``shared/data`` beside the current directory and beside the repository root."""
    return [
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[2].parent / "shared" / "data",
    ]


def candidate_dirs(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for ``spec``'s files: per root its subfolder, the root, the layouts."""
    dirs: list[Path] = []
    for root in data_search_path(data_dir):
        for sub in (spec.subfolder, "", *spec.layout_dirs):
            folder = root / sub if sub else root
            if folder not in dirs:
                dirs.append(folder)
    return dirs


def find_file(name: str, dirs: list[Path]) -> Path | None:
    """The first ``dir / name`` that is a file, or ``None``."""
    for folder in dirs:
        path = folder / name
        if path.is_file():
            return path
    return None


def locate(
    spec: DatasetSpec,
    filename: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """Find a known file, verify its checksum, or download it into the cache.

    Args:
        spec: the dataset the file belongs to.
        filename: a key of ``spec.files``.
        data_dir: folder searched first.
        download: fetch from ``registry.MIRRORS`` when not found.

    Returns:
        Path of a verified file.

    Raises:
        DataFileError: missing (and download off or failed) or checksum mismatch.
    """
    fspec = spec.file(filename)
    dirs = candidate_dirs(spec, data_dir)
    found = find_file(filename, dirs)
    if found is not None:
        return _download.verify_file(found, fspec)
    want = _download.expected_digest(fspec)
    checksum = f"{want[0]} {want[1]}" if want else "checksum unknown"
    searched = ", ".join(str(d) for d in dirs)
    fix = (
        f"Fix: pass `data_dir=DIR` or set LEAFSCOPE_DATA=DIR to a folder holding "
        f"{filename} (directly or in {spec.subfolder}/)"
    )
    mirrors = registry.MIRRORS.get(spec.key, [])
    if not download or not mirrors or want is None:
        why = "download disabled" if not download else "no verified download source is known"
        allow = ", or allow download (download=True)" if not download and mirrors and want else ""
        raise DataFileError(
            f"{spec.title} file {filename} ({checksum}) not found ({why}). "
            f"Searched: {searched}. {fix}{allow}."
        )
    dest = cache_dir() / spec.subfolder / filename
    try:
        return _download.download_file(fspec, dest, mirrors)
    except DataFileError as exc:
        raise DataFileError(
            f"{spec.title} file {filename} ({checksum}) not found and {exc}. "
            f"Searched: {searched}. {fix}."
        ) from None
