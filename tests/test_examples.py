"""Every script in examples/ runs on its tiny synthetic data and prints sensible numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


def test_own_model_example():
    out = _run("own_model.py", "--points", "4")
    assert _number(r"test accuracy ([\d.]+)", out) > 0.9
    eig = [float(v) for v in re.search(r"point 0: \[(.*)\]", out).group(1).split(",")]
    assert len(eig) == 2 and eig[0] >= eig[1] > 0  # C - 1 = 2 nonzero eigenvalues
    trace, total = re.search(r"trace = sum of eigenvalues: (\S+) = (\S+)", out).groups()
    assert float(trace) == pytest.approx(float(total), rel=1e-9)
    assert _number(r"energy AUROC.*: ([\d.]+)", out) > 0.5
    assert 0 < _number(r"remaining distance ([\d.]+)", out) <= 1


def test_plain_loop_monitor_example():
    out = _run("plain_loop_monitor.py", "--epochs", "3")
    temps = re.findall(r"filter temperatures ([^;]+);", out)
    assert temps and all(len(t.split(",")) == 4 for t in temps)
    assert any(float(v) > 0 for v in temps[0].split(","))
    assert "channel LOO errors" in out


def test_own_embeddings_example():
    out = _run("own_embeddings_nnk.py", "--points", "400")
    assert _number(r"local dimension 2 at (\d+)%", out) >= 80
    assert 1 < _number(r"mean degree ([\d.]+)", out) <= 15
