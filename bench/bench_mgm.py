"""Benchmark: manifold graph metrics of wide features, row-space coordinates vs the raw features.

LeNet-5 conv1 features (D = 4704) of the first N MNIST training images, NNK graph (cosine,
k = 15); all four MGMs (orientation included) computed twice in one process: as the library
does (coordinates in an orthonormal basis of the rows' span when D > N) and on the raw
D-dimensional features. Prints both times, the ratio and the largest differences.

    PYTHONPATH=. .venv/bin/python bench/bench_mgm.py [--points 1000] [--checkpoint CKPT]

Without --checkpoint a LeNet is trained for one epoch on 6000 images first (about 10 s).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from leafscope.data import load_images
from leafscope.models import build_model
from leafscope.models.features import layer_features
from leafscope.nnk import metrics as mgm
from leafscope.nnk.graph import NNKGraph
from leafscope.training import fit, load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--layer", default="conv1")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = build_model("lenet")
        train = load_images("mnist", "train", limit=6000)
        fit(model, train, epochs=1, lr=0.01, momentum=0.9, progress=False)
    x = load_images("mnist", "train", limit=args.points).images
    feats = layer_features(model, x, [args.layer])[args.layer]
    graph = NNKGraph(k=args.k, kernel="cosine").fit(feats)

    t0 = time.perf_counter()
    fast = mgm.manifold_graph_metrics(graph)
    t_fast = time.perf_counter() - t0
    keep = mgm._row_space_coordinates
    mgm._row_space_coordinates = lambda Z: Z  # the raw D-dimensional route
    try:
        t0 = time.perf_counter()
        slow = mgm.manifold_graph_metrics(graph)
        t_raw = time.perf_counter() - t0
    finally:
        mgm._row_space_coordinates = keep
    print(f"{args.points} points, {args.layer} features D = {feats.shape[1]}, k = {args.k}, "
          f"{args.threads} thread(s)")  # fmt: skip
    print(f"row-space coordinates: {t_fast:.2f} s   raw features: {t_raw:.2f} s   "
          f"ratio {t_raw / t_fast:.1f}x")  # fmt: skip
    for name in ("n_neighbors", "local_dim", "diameter", "orientation"):
        diff = np.nanmax(np.abs(getattr(fast, name) - getattr(slow, name)))
        print(f"  max |difference| {name}: {diff:.2e}")


if __name__ == "__main__":
    main()
