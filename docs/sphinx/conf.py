"""Sphinx configuration: the API reference from the docstrings (autodoc + napoleon, Google style)
and the user guide (Markdown via myst-parser).

Build: ``sphinx-build -W -b html docs/sphinx BUILD`` (the test suite does this, warnings as errors).
The API page lists every package of leafscope found at build time (see :func:`_api_source`), so
moving a module between packages never breaks the build.
"""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import leafscope  # noqa: E402

project = "leafscope"
author = "the leafscope authors"
release = version = leafscope.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# ``Task.Params`` is each task's parameter class itself: documented once, as its class
autodoc_default_options = {"members": True, "show-inheritance": True, "exclude-members": "Params"}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]  # links to repository files outside docs/sphinx


def _api_source() -> str:
    """reST of the API page: the top-level package, its modules, then every subpackage with the
    members of its ``__all__`` (a package without ``__all__``: its docstring only)."""
    top = [m for m in pkgutil.iter_modules(leafscope.__path__) if not m.name.startswith("_")]
    lines = ["", ".. automodule:: leafscope", "   :no-members:", ""]
    for info in sorted(top, key=lambda m: (m.ispkg, m.name)):
        name = f"leafscope.{info.name}"
        lines += [name, "-" * len(name), "", f".. automodule:: {name}", ""]
    return "\n".join(lines) + "\n"


def _fill_api(app, docname: str, source: list[str]) -> None:
    if docname == "api":
        source[0] = source[0].replace(".. leafscope-packages::", _api_source())


def setup(app):
    app.connect("source-read", _fill_api)
    return {"parallel_read_safe": True}
