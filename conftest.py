"""Collection rules shared by tests/ and the doctests of leafscope/ (``--doctest-modules``).

A module that imports an optional package which is not installed is left out of the doctest
collection (its tests skip on their own); any other import error still fails the run.
"""

from __future__ import annotations

import importlib
from pathlib import Path

# Optional packages: extras of pyproject.toml and lazily imported helpers.
OPTIONAL = {
    "PIL",
    "dask",
    "distributed",
    "lightning",
    "pytorch_lightning",
    "pyarrow",
    "sphinx",
    "myst_parser",
}
PACKAGE = Path(__file__).parent / "leafscope"


def _missing_optional(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from is a missing optional package (a
    module may re-raise the ImportError with an install hint)."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in OPTIONAL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    path = Path(collection_path)
    if path.suffix != ".py" or PACKAGE not in path.parents:
        return None
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
    except ImportError as exc:
        if _missing_optional(exc):
            return True
        raise
    return None
