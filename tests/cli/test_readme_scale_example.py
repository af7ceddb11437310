"""The README's "Results at scale" example runs on a real result folder (pandas + pyarrow)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from leafscope.execution import ResultFolder

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_reads_the_shards(tmp_path, monkeypatch, capsys):
    section = README.read_text(encoding="utf-8").split("## Results at scale", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    folder = ResultFolder(tmp_path / "results")
    rng = np.random.default_rng(0)
    for shard in range(3):
        ev = np.sort(rng.random((4, 9)), axis=1)[:, ::-1]
        folder.write_shard(shard, {
            "index": np.arange(4 * shard, 4 * shard + 4), "label": np.arange(4) % 2,
            "eigenvalues": ev, "log10_trace": np.log10(ev.sum(1)),
        })  # fmt: skip
    folder.write_summary({"summary": {"median_log10_trace": 0.5}})
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["rows"]["index"].tolist() == list(range(12))
    assert scope["rows"]["eigenvalues"].iloc[0].shape == (9,)
    assert capsys.readouterr().out.startswith("12 ")
