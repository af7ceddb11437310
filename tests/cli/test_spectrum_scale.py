"""``leafscope spectrum --out DIR`` at small scale: Parquet rows equal the library's spectra,
Dask workers give the in-process rows, a job killed with SIGKILL resumes to the same rows, job
array slices merge to the whole, and the default install needs neither Dask nor pyarrow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.cli.main import main
from leafscope.data import load_images
from leafscope.data.spec import select_points
from leafscope.information import point_spectra
from leafscope.models import build_model
from leafscope.testing import shared_data_dir
from leafscope.training import load_checkpoint, save_checkpoint

pq = pytest.importorskip("pyarrow.parquet")
pytestmark = pytest.mark.skipif(shared_data_dir() is None, reason="shared MNIST files absent")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "lenet.pt"
    return save_checkpoint(path, model=build_model("lenet"), epoch=0, step=0, history=[])


def _spectrum(ckpt, out, *extra):
    argv = ["spectrum", "--checkpoint", str(ckpt), "--device", "cpu", "--no-progress"]
    return main([*argv, "--out", str(out), *extra])


def _rows(folder):
    table = pq.read_table(folder)  # the folder as a Parquet data set: the JSON files are skipped
    return table.sort_by("index").to_pydict()


def _assert_rows_close(a, b, tol):
    """Numeric columns within ``tol`` (NaN where both are NaN), the others equal."""
    assert a.keys() == b.keys() and len(a["index"]) == len(b["index"])
    for key in a:
        try:
            x, y = np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float)
        except ValueError:  # text columns (the token shares of text models)
            assert a[key] == b[key], key
            continue
        np.testing.assert_allclose(x, y, rtol=0, atol=tol, err_msg=key, equal_nan=True)


def test_rows_equal_the_library_and_the_summary_all_rows(lenet, tmp_path):
    out = tmp_path / "d0"
    assert (
        _spectrum(
            lenet, out, "--points", "40", "--shard-size", "16", "--json", str(tmp_path / "r.json")
        )
        == 0
    )  # noqa: E501
    assert sorted(p.name for p in out.glob("shard-*.parquet")) == [
        "shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"
    ]  # fmt: skip
    rows = _rows(out)
    test = load_images("mnist", "test")
    chosen = select_points(test.labels, points=40, seed=0)  # the seeded stratified sample
    assert rows["index"] == chosen and len(set(rows["label"])) == 10
    x = test.subset(chosen)
    ref = point_spectra(load_checkpoint(lenet), x.images, batch_size=16, dtype=torch.float64)
    np.testing.assert_allclose(np.array(rows["eigenvalues"]), ref.eigenvalues.numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.array(rows["trace"]), ref.trace.numpy(), rtol=1e-12)
    assert rows["label"] == x.labels.tolist() and rows["predicted"] == ref.predicted.tolist()
    assert rows["rank"] == ref.rank.tolist()
    logs = np.log10(np.array(rows["eigenvalues"]))
    np.testing.assert_allclose(np.array(rows["log10_eigenvalues"]), logs, rtol=0, atol=1e-12)
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["num_units"] == 40 and summary["num_shards"] == 3
    medians = summary["summary"]
    assert medians["median_log10_highest"] == pytest.approx(np.median(logs[:, 0]), abs=1e-12)
    assert medians["median_delta"] == pytest.approx(np.median(logs[:, 0] - logs[:, -1]), abs=1e-12)
    assert medians["median_log10_trace"] == pytest.approx(
        np.median(np.log10(rows["trace"])), abs=1e-12
    )
    document = json.loads((tmp_path / "r.json").read_text())  # --json beside --out: same rows
    assert [p["index"] for p in document["points"]] == chosen
    assert document["summary"] == medians


def test_dask_workers_give_the_in_process_rows(lenet, tmp_path):
    """The issue's bar at small scale."""
    common = ["--points", "64", "--dtype", "float64", "--shard-size", "16"]
    assert _spectrum(lenet, tmp_path / "d0", *common) == 0
    assert _spectrum(lenet, tmp_path / "d", *common, "--executor", "dask", "--workers", "2") == 0
    a, b = _rows(tmp_path / "d0"), _rows(tmp_path / "d")
    assert len(b["index"]) == 64
    _assert_rows_close(a, b, 1e-10)
    s0, s1 = (json.loads((tmp_path / d / "_summary.json").read_text()) for d in ("d0", "d"))
    assert s0["summary"] == pytest.approx(s1["summary"], abs=1e-10)


HELD_MODEL = """
import os
import time
from pathlib import Path

import torch
from torch import nn


class Held(nn.Module):
    \"\"\"A small MLP that, when LEAFSCOPE_TEST_HOLD names a file that exists, marks
    LEAFSCOPE_TEST_HELD and waits to be killed instead of computing.\"\"\"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(self, x):
        hold = os.environ.get("LEAFSCOPE_TEST_HOLD")
        if hold and Path(hold).exists():
            Path(os.environ["LEAFSCOPE_TEST_HELD"]).touch()
            while True:
                time.sleep(1)
        return self.net(x)


def make():
    return Held()
"""


def test_kill_9_then_resume_gives_the_uninterrupted_rows(tmp_path):
    """Killed (SIGKILL) while computing the second shard, the job leaves the first shard and
    nothing else; resumed, it gives exactly the rows of an uninterrupted run. Deterministic:
    the model blocks (forever) on its first call once the first shard file exists, and the
    test kills the job only when the model says it is blocked."""
    factory = tmp_path / "held_model.py"
    factory.write_text(textwrap.dedent(HELD_MODEL))
    argv = ["spectrum", "--model", f"{factory}:make", "--points", "24", "--shard-size", "4",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    killed, held = tmp_path / "killed", tmp_path / "held"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    hold = {"LEAFSCOPE_TEST_HOLD": str(killed / "shard-00000.parquet"),
            "LEAFSCOPE_TEST_HELD": str(held)}  # fmt: skip
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leafscope.cli.main", *argv, "--out", str(killed)],
            env={**env, **hold}, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not held.exists():
            if proc.poll() is not None:
                pytest.fail(f"the job ended before its second shard: {log.read_text()[-3000:]}")
            assert time.monotonic() < deadline, "the job never reached its second shard"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # exactly the first shard, complete (atomic writes), and no summary
    assert sorted(p.name for p in killed.iterdir()) == ["_settings.json", "shard-00000.parquet"]
    assert len(_rows(killed)["index"]) == 4
    assert main([*argv, "--out", str(killed)]) == 2  # finished shards need --resume
    # the other runs as processes too: the same threads, hence the same round-off, as the first
    for extra in (["--out", str(killed), "--resume"], ["--out", str(tmp_path / "whole")]):
        cmd = [sys.executable, "-m", "leafscope.cli.main", *argv, *extra]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    a, b = _rows(killed), _rows(tmp_path / "whole")
    _assert_rows_close(a, b, 0)  # exactly the same rows
    assert len(a["index"]) == 24 == len(set(a["index"]))
    s = [json.loads((tmp_path / d / "_summary.json").read_text()) for d in ("killed", "whole")]
    assert s[0]["summary"] == s[1]["summary"]


def test_slices_and_merge_equal_the_whole(lenet, tmp_path, capsys):
    common = ["--points", "30", "--shard-size", "7"]  # 5 shards: slices of 2 and 3
    parts = tmp_path / "parts"
    assert _spectrum(lenet, parts, *common, "--shard", "2/2") == 0  # slices count from 1
    assert "leafscope merge" in capsys.readouterr().out
    assert sorted(p.name for p in parts.glob("shard-*")) == [
        "shard-00002.parquet", "shard-00003.parquet", "shard-00004.parquet"
    ]  # fmt: skip
    assert main(["merge", str(parts)]) == 2
    assert "misses 2 of 5 shards (0, 1)" in capsys.readouterr().err
    assert _spectrum(lenet, parts, *common, "--shard", "0/2") == 2  # 0 is not a slice
    assert "1 <= I <= N" in capsys.readouterr().err
    assert _spectrum(lenet, parts, *common, "--shard", "1/2") == 0
    (parts / "_summary.json").unlink()  # the last slice wrote it: merge must rebuild it
    assert main(["merge", str(parts), "--json", str(tmp_path / "m.json")]) == 0
    assert _spectrum(lenet, tmp_path / "whole", *common) == 0
    _assert_rows_close(_rows(parts), _rows(tmp_path / "whole"), 0)
    merged = json.loads((parts / "_summary.json").read_text())
    whole = json.loads((tmp_path / "whole" / "_summary.json").read_text())
    assert merged == whole == json.loads((tmp_path / "m.json").read_text())


def test_resume_refuses_other_settings(lenet, tmp_path, capsys):
    out = tmp_path / "d"
    assert _spectrum(lenet, out, "--points", "8", "--shard-size", "4") == 0
    assert _spectrum(lenet, out, "--points", "8", "--shard-size", "4", "--dtype", "float32",
                     "--resume") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "other settings (params.dtype: 'float32' here, 'float64' in the folder)" in err
    assert _spectrum(lenet, out, "--points", "8", "--shard-size", "4", "--resume") == 0
    assert main(["merge", str(tmp_path)]) == 2
    assert "is not a result folder" in capsys.readouterr().err


BLOCK_OPTIONAL = """
import sys
for name in ("dask", "distributed", "pyarrow"):
    sys.modules[name] = None  # as if not installed
from leafscope.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_default_install_needs_neither_dask_nor_pyarrow(lenet, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-c", BLOCK_OPTIONAL, "spectrum", "--checkpoint", str(lenet),
            "--points", "3", "--device", "cpu", "--no-progress"]  # fmt: skip
    ok = subprocess.run([*base, "--json", str(tmp_path / "s.json")], env=env, capture_output=True,
                        text=True, timeout=300)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads((tmp_path / "s.json").read_text())["points"]) == 3
    bad = subprocess.run([*base, "--executor", "dask"], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert bad.returncode == 2
    assert "pip install 'leafscope[dask]'" in bad.stderr and bad.stderr.count("\n") == 1


def test_foreign_and_damaged_shards_are_named_and_recomputed(lenet, tmp_path, capsys):
    """The issue's bar: a shard of another checkpoint and a truncated shard never merge."""
    common = ["--points", "12", "--shard-size", "4"]
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.pt", model=build_model("lenet"), epoch=0, step=0,
                            history=[])  # fmt: skip
    assert _spectrum(lenet, tmp_path / "clean", *common) == 0
    assert _spectrum(other, tmp_path / "foreign", *common) == 0
    mixed = tmp_path / "mixed"
    assert _spectrum(lenet, mixed, *common) == 0
    (mixed / "shard-00001.parquet").write_bytes((tmp_path / "foreign" / "shard-00001.parquet")
                                                .read_bytes())  # fmt: skip
    capsys.readouterr()
    assert main(["merge", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert "shard-00001.parquet" in err and "another job" in err and err.count("\n") == 1
    data = (mixed / "shard-00002.parquet").read_bytes()
    (mixed / "shard-00002.parquet").write_bytes(data[: len(data) // 2])  # truncated
    (mixed / "shard-00001.parquet").write_bytes(b"")  # empty
    assert main(["merge", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "shard-00001.parquet" in err and "unreadable" in err  # the first bad one is named
    (mixed / "shard-00001.parquet").write_bytes((tmp_path / "clean" / "shard-00001.parquet")
                                                .read_bytes())  # fmt: skip
    assert main(["merge", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert "shard-00002.parquet" in err and "unreadable" in err and err.count("\n") == 1
    (mixed / "shard-00001.parquet").write_bytes(b"")  # empty again: resume recomputes both
    assert _spectrum(lenet, mixed, *common, "--resume") == 0
    out = capsys.readouterr().out
    assert "recomputed shard 1" in out and "recomputed shard 2" in out
    _assert_rows_close(_rows(mixed), _rows(tmp_path / "clean"), 0)
    assert main(["merge", str(mixed)]) == 0
