"""Peak memory of ``leafscope spectrum`` on an RGB image folder as the folder grows, against the
obvious alternative: decoding the whole folder first (what the loader did before the data layer
streamed).

Writes two folders of 96x96 RGB PNG images sorted by class (10 classes), then runs, each in a
fresh process, ``leafscope spectrum --model bench_cnn.py:make --dataset FOLDER --split all
--points 64`` and a script that decodes the whole folder with ``load_images`` before the same
64-point spectrum. Prints the peak resident memory (ru_maxrss of the child) of each and the
classes covered by the 64 points.

    python bench/bench_streamed_data.py --sizes 400,2400
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

CNN = """
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 10),
    )
"""

EAGER = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from bench_cnn import make
from leafscope.data import load_images
from leafscope.information import point_spectra
data = load_images(sys.argv[1], "test")          # every file decoded to float32 first
x = data.images[:64]
point_spectra(make().eval(), x, batch_size=64, dtype=torch.float64)
"""


def write_folder(root: Path, n: int, size: int = 96) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / f"images-{n}"
    for i in range(n):
        label = i * 10 // n  # sorted by class: the first files are all of class 0
        path = folder / str(label) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return folder


def peak_mib(cmd: list[str], cwd: Path) -> float:
    """Peak resident memory (MiB) of the child process running ``cmd``."""
    script = textwrap.dedent(
        """
        import resource, subprocess, sys
        done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        """
    )
    out = subprocess.run([sys.executable, "-c", script, *cmd], cwd=cwd, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="400,2400", help="folder sizes (images)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bench_cnn.py").write_text(CNN)
        print(f"{'images':>7s} {'streamed MiB':>13s} {'eager MiB':>10s} {'ratio':>6s} classes")
        for n in sizes:
            folder = write_folder(root, n)
            out = root / f"s{n}.json"
            spectrum = [sys.executable, "-m", "leafscope.cli.main", "spectrum", "--model",
                        f"{root / 'bench_cnn.py'}:make", "--dataset", str(folder), "--split",
                        "all", "--points", "64", "--device", "cpu", "--no-progress", "--json",
                        str(out)]  # fmt: skip
            streamed = peak_mib(spectrum, root)
            eager = peak_mib([sys.executable, "-c", EAGER, str(folder), str(root)], root)
            labels = {p["label"] for p in json.loads(out.read_text())["points"]}
            print(f"{n:7d} {streamed:13.0f} {eager:10.0f} {eager / streamed:6.2f} {len(labels)}")


if __name__ == "__main__":
    main()
