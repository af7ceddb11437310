"""The documentation builds with warnings as errors: the user guide, the architecture page and the
API reference generated from every package's docstrings (Sphinx autodoc + napoleon)."""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("index.html", "guide.html", "architecture.html", "api.html")
MISSING = [m for m in ("sphinx", "myst_parser") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(
    bool(MISSING),
    reason=f"{' and '.join(MISSING)} not installed: pip install -e '.[dev]' (make test does)",
)
def test_sphinx_build_without_warnings(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs" / "sphinx"), str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stderr[-6000:]}"
    pages = {p: (out / p).read_text(encoding="utf-8") for p in PAGES}
    api = pages["api.html"]
    # every package and top-level module of leafscope has its section on the API page
    import leafscope

    for info in pkgutil.iter_modules(leafscope.__path__):
        if not info.name.startswith("_"):
            anchor = f'id="module-leafscope.{info.name}"'
            assert anchor in api, f"leafscope.{info.name} missing from the API reference"
    for name in (
        "leafscope.information.DataInformation",
        "leafscope.information.FisherInformation",
        "leafscope.training.load_checkpoint",
        "leafscope.nnk.NNKGraph",
        "leafscope.errors.InputError",
    ):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"
    # napoleon turned the Google-style sections into fields (no raw "Args:" left)
    assert "Args" not in api.split('id="leafscope.information.DataInformation"')[1][:4000]
    # the index links the three pages; each page holds its own text, not an empty shell
    for page in ("guide.html", "architecture.html", "api.html"):
        assert f'href="{page}"' in pages["index.html"], f"index.html does not link {page}"
    assert "API reference" in api and "DataInformation" in api
    markdown = {"guide": "docs/sphinx/guide.md", "architecture": "docs/architecture.md"}
    for page, path in markdown.items():  # the Markdown pages, rendered (or included) by myst
        source = (ROOT / path).read_text(encoding="utf-8")
        title = next(line[2:].strip() for line in source.splitlines() if line.startswith("# "))
        assert f"<h1>{title}" in pages[f"{page}.html"], f"{page}.html lacks its title {title!r}"
    assert "<pre>" in pages["architecture.html"]  # the package tree, as a code block
    assert (out / "searchindex.js").stat().st_size > 0
