"""Scale of ``leafscope spectrum`` (issue 13): executor overhead, CLI against library, peak RSS.

Three measurements, each against the obvious alternative in the same run:

* ``overhead``: the spectrum of N points (default 2048) in shards on 2 Dask worker processes
  against in process (same shards); wall times and the largest difference between the rows.
* ``cli``: ``leafscope spectrum --out`` as a fresh process against a fresh Python process that
  does the same with the library (load the checkpoint and the data, ``point_spectra``, save the
  arrays), at two sizes; the ratio of wall times and of the marginal cost per point.
* ``rss``: peak resident memory (``ru_maxrss`` of the child, from ``os.wait4``) of the spectrum
  of all 70,000 MNIST images (``--split all --points all``) against the memory the factors of
  all points would take if they were held at once (N x C x d x 8 bytes).

The model is a seeded LeNet-5 (random weights: the cost does not depend on the weights).

    PYTHONPATH=. .venv/bin/python bench/bench_scale.py overhead [--points 2048]
    PYTHONPATH=. .venv/bin/python bench/bench_scale.py cli [--sizes 256,2048]
    PYTHONPATH=. .venv/bin/python bench/bench_scale.py rss [--points all]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

LIBRARY_SCRIPT = """
import sys, numpy as np, torch
from leafscope.data import load_images
from leafscope.information import point_spectra
from leafscope.training import load_checkpoint
ckpt, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
model = load_checkpoint(ckpt)
x = load_images("mnist", "test").images[:n]
s = point_spectra(model, x, batch_size=64, dtype=torch.float64)
np.savez(out, eigenvalues=s.eigenvalues.numpy(), trace=s.trace.numpy(), rank=s.rank.numpy())
"""


def _checkpoint(folder: Path) -> Path:
    import torch

    from leafscope.models import build_model
    from leafscope.training import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(folder / "lenet.pt", model=build_model("lenet"), epoch=0, step=0,
                           history=[])  # fmt: skip


def _run(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{argv[:4]} failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss * 1024  # Linux: KiB


def _cli(ckpt: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "leafscope.cli.main", "spectrum", "--checkpoint", str(ckpt),
            "--device", "cpu", "--no-progress", *args]  # fmt: skip


def bench_overhead(points: int, workers: int, shard_size: int) -> dict:
    from leafscope.execution import (
        DataSpec,
        ModelSpec,
        ResultFolder,
        SpectrumJob,
        make_executor,
        run_spectrum_job,
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        job = SpectrumJob(ModelSpec(checkpoint=str(_checkpoint(tmp))), DataSpec("mnist", "test"),
                          list(range(points)), shard_size=shard_size)  # fmt: skip
        times, rows = {}, {}
        for kind in ("inprocess", "dask"):
            t0 = time.perf_counter()
            with make_executor(kind, workers=workers if kind == "dask" else None) as ex:
                started = time.perf_counter()
                run_spectrum_job(job, ex, out=tmp / kind)
            times[kind] = {"total_s": time.perf_counter() - t0, "start_s": started - t0}
            rows[kind] = ResultFolder(tmp / kind).read_columns(len(job.shards))
        diff = max(
            float(np.abs(rows["inprocess"][k].astype(float) - rows["dask"][k].astype(float)).max())
            for k in rows["dask"]
        )
    return {"points": points, "workers": workers, "shard_size": shard_size, "times": times,
            "max_abs_diff": diff}  # fmt: skip


def bench_cli(sizes: list[int]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = _checkpoint(tmp)
        out = {}
        for n in sizes:
            script = [sys.executable, "-c", LIBRARY_SCRIPT, str(ckpt), str(n), str(tmp / "l.npz")]
            lib, _ = _run(script)
            cli, _ = _run(_cli(ckpt, "--points", str(n), "--out", str(tmp / f"cli{n}")))
            out[n] = {"library_s": lib, "cli_s": cli, "ratio": cli / lib}
        a, b = sizes[0], sizes[-1]
        marginal = {k: (out[b][k] - out[a][k]) / (b - a) * 1e3 for k in ("library_s", "cli_s")}
    return {"runs": out, "marginal_ms_per_point": marginal,
            "marginal_ratio": marginal["cli_s"] / marginal["library_s"]}  # fmt: skip


def bench_rss(points: str, batch_size: int, shard_size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = _checkpoint(tmp)
        args = ["--split", "all", "--points", points, "--batch-size", str(batch_size),
                "--shard-size", str(shard_size), "--out", str(tmp / "all")]  # fmt: skip
        seconds, rss = _run(_cli(ckpt, *args))
        summary = json.loads((tmp / "all" / "_summary.json").read_text())
        small = ["--split", "all", "--points", "1000", "--batch-size", str(batch_size),
                 "--shard-size", "500", "--out", str(tmp / "small")]  # fmt: skip
        _, small_rss = _run(_cli(ckpt, *small))
    n, c, d = summary["num_points"], 10, 28 * 28
    return {
        "points": n,
        "seconds": seconds,
        "peak_rss_mib": rss / 2**20,
        "peak_rss_mib_1000_points": small_rss / 2**20,
        "all_factors_mib": n * c * d * 8 / 2**20,
        "one_batch_of_factors_mib": batch_size * c * d * 8 / 2**20,
        "summary": summary["summary"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("overhead")
    p.add_argument("--points", type=int, default=2048)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shard-size", type=int, default=256)
    p = sub.add_parser("cli")
    p.add_argument("--sizes", default="256,2048")
    p = sub.add_parser("rss")
    p.add_argument("--points", default="all")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=5000)
    args = parser.parse_args()
    load = os.getloadavg()
    if args.what == "overhead":
        result = bench_overhead(args.points, args.workers, args.shard_size)
    elif args.what == "cli":
        result = bench_cli([int(s) for s in args.sizes.split(",")])
    else:
        result = bench_rss(args.points, args.batch_size, args.shard_size)
    result["load_average_before_after"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
