"""The documentation builds with warnings as errors: the user guide, the architecture page and the
API reference generated from every package's docstrings (Sphinx autodoc + napoleon)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MISSING = [m for m in ("sphinx", "myst_parser") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(
    bool(MISSING),
    reason=f"{' and '.join(MISSING)} not installed: pip install -e '.[dev]' (make test does)",
)
def test_sphinx_build_without_warnings(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "html"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs" / "sphinx"), str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stderr[-6000:]}"
    assert seconds < 120, f"the docs build took {seconds:.0f} s"
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in (
        "leafscope.information.DataInformation",
        "leafscope.information.FisherInformation",
        "leafscope.training.load_checkpoint",
        "leafscope.nnk.NNKGraph",
        "leafscope.errors.InputError",
    ):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"
    assert "Args" not in api.split('id="leafscope.information.DataInformation"')[1][:4000]
    for page in ("guide.html", "architecture.html", "index.html"):
        assert (out / page).stat().st_size > 2000
