"""Size and opening time of the explorer page (``leafscope explore``).

Measures, for each page: the seconds ``leafscope explore`` took, the megabytes on disk (the page:
``index.html`` and ``_files/``; and the whole result folder with its Parquet shards), and in
headless Chromium (Debian's ``chromium`` driven by Playwright) the seconds from navigation to the
page's ``load`` event (every data file parsed), to the gallery shown, and from a click on a point
to its directions and walk shown (median of ``--repeats`` fresh pages).

Two pages by default: MNIST test points with a checkpoint (``--checkpoint``; skipped without
one) and CIFAR-size RGB points: a random (N, 3, 32, 32) ``.npz`` (uniform noise: the worst case
for PNG compression), or ``--rgb-dataset cifar10`` when its files are present, with a small RGB
CNN factory (random weights: the page's size and speed hardly depend on them).

    python bench/bench_explorer.py --checkpoint runs/lenet/epoch_0001.pt --mnist-points 1000 \\
        --rgb-points 200 --out /tmp/bench-explorer
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FACTORY = '''
import torch
from torch import nn


def rgb_cnn(num_classes=10):
    """A small CNN on (N, 3, 32, 32) images."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, num_classes),
    )
'''


def megabytes(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1e6


def explore(args: list[str], out: Path, threads: int) -> float:
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "leafscope.cli.main", "explore", *args, "--out", str(out),
               "--no-progress", "--device", "cpu", "--threads", str(threads)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    print(" ".join(command[1:]))
    print(done.stdout.strip())
    return seconds


def open_times(folder: Path, chromium: str, repeats: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    loads, galleries, clicks = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for _ in range(repeats):
            page = browser.new_page()
            start = time.perf_counter()
            page.goto((folder / "index.html").as_uri(), wait_until="load")
            loads.append(time.perf_counter() - start)
            mark = page.evaluate(
                "() => performance.getEntriesByName('leafscope-gallery')[0].startTime"
            )
            galleries.append(mark / 1000.0)
            points = page.locator('[data-testid="point"]')
            target = points.nth(points.count() - 1)
            start = time.perf_counter()
            target.click()
            page.locator('[data-testid="current"]').wait_for()
            clicks.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return {
        "open_s": statistics.median(loads),
        "gallery_s": statistics.median(galleries),
        "click_to_walk_s": statistics.median(clicks),
    }


def measure(name: str, folder: Path, seconds: float, chromium: str | None, repeats: int) -> dict:
    page_files = [folder / "index.html", *(folder / "_files").rglob("*")]
    record = {
        "page": name,
        "explore_s": round(seconds, 1),
        "page_mb": round(megabytes(page_files), 2),
        "folder_mb": round(megabytes(folder.rglob("*")), 2),
        "points": json.loads((folder / "_summary.json").read_text())["num_rows"],
    }
    if chromium:
        times = open_times(folder, chromium, repeats)
        record.update({k: round(v, 3) for k, v in times.items() if v is not None})
    print(json.dumps(record))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="an MNIST checkpoint (leafscope train)")
    parser.add_argument("--data-dir", default=None, help="folder of the MNIST / CIFAR files")
    parser.add_argument("--mnist-points", type=int, default=1000)
    parser.add_argument("--rgb-points", type=int, default=200)
    parser.add_argument("--rgb-dataset", default=None, help="e.g. cifar10 (default: random)")
    parser.add_argument("--out", type=Path, default=Path("bench-explorer"))
    parser.add_argument("--repeats", type=int, default=3, help="fresh pages per opening time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    chromium = args.chromium if args.chromium and Path(args.chromium).is_file() else None
    if chromium is None:
        print("no Chromium: sizes only")
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = ["--data-dir", args.data_dir] if args.data_dir else []
    results = []
    if args.checkpoint:
        out = args.out / "mnist"
        seconds = explore(
            ["--checkpoint", args.checkpoint, "--dataset", "mnist", "--split", "test",
             "--points", str(args.mnist_points), *data_dir], out, args.threads,
        )  # fmt: skip
        results.append(measure(f"mnist {args.mnist_points}", out, seconds, chromium, args.repeats))
    factory = args.out / "rgb_factory.py"
    factory.write_text(FACTORY)
    n = args.rgb_points
    if args.rgb_dataset:
        dataset, name = [args.rgb_dataset, "--split", "test", *data_dir], args.rgb_dataset
    else:
        data = args.out / "rgb32.npz"
        rng = np.random.default_rng(0)
        np.savez(data, x=rng.random((n, 3, 32, 32), dtype=np.float32),
                 y=rng.integers(0, 10, n).astype(np.int64))  # fmt: skip
        dataset, name = [str(data), "--split", "all"], "random rgb 32x32"
    out = args.out / "rgb"
    seconds = explore(
        ["--model", f"{factory}:rgb_cnn", "--dataset", *dataset, "--points", str(n)],
        out, args.threads,
    )  # fmt: skip
    results.append(measure(f"{name} {n}", out, seconds, chromium, args.repeats))
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
