"""Every notebook in examples/ is stored without outputs and runs top to bottom on its tiny
synthetic data (nbclient, the ``python3`` kernel of this interpreter); the assertions inside the
notebooks check the numbers, and this test checks what they print.

Skipped, saying why, without ``nbclient`` / ``nbformat`` / ``ipykernel`` (``pip install nbclient
nbformat ipykernel``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))


def _read(path: Path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    return nbformat.read(path, as_version=4)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = _read(path)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
    return "".join(parts)


def _execute(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed")
    pytest.importorskip("ipykernel", reason="ipykernel (the python3 kernel) is not installed")
    nb = _read(path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
    for cell in nb.cells:  # point the page's folder into tmp_path
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace("OUT = None", f"OUT = {str(tmp_path / 'out')!r}")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return nb


def test_own_model_geometry_notebook(tmp_path, monkeypatch):
    nb = _execute(ROOT / "examples" / "own_model_geometry.ipynb", tmp_path, monkeypatch)
    text = _text(nb)
    accuracy = float(text.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.8
    found = re.search(r"total-variation change: leaf ([\d.]+), kernel ([\d.]+)", text)
    leaf, kernel = float(found.group(1)), float(found.group(2))
    assert leaf > 0.2 and leaf > 2 * kernel
    assert (tmp_path / "out" / "page" / "index.html").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the eigen-directions figure was not drawn"


def test_own_embeddings_nnk_notebook(tmp_path, monkeypatch):
    nb = _execute(ROOT / "examples" / "own_embeddings_nnk.ipynb", tmp_path, monkeypatch)
    text = _text(nb)
    share = float(text.split("local dimension 2 at ")[1].split("%")[0])
    assert share > 60
    assert "NNK leave-one-out error" in text
