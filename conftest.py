"""Collection rules shared by tests/ and the doctests of leafscope/ (``--doctest-modules``).

A module that imports an optional package which is not installed is left out of the doctest
collection (its tests skip on their own); any other import error still fails the run.
"""

from __future__ import annotations

import importlib
from pathlib import Path

# Optional packages: extras of pyproject.toml and lazily imported helpers.
OPTIONAL = {"PIL", "dask", "distributed", "pyarrow", "sphinx", "myst_parser"}
PACKAGE = Path(__file__).parent / "leafscope"


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    path = Path(collection_path)
    if path.suffix != ".py" or PACKAGE not in path.parents:
        return None
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in OPTIONAL:
            return True
        raise
    return None
