"""An NNK graph and its manifold graph metrics on your own embeddings.

Run: python examples/own_embeddings_nnk.py [--points 600]

Any (N, D) array works (sentence embeddings, penultimate features, ...). Here the embeddings are
points of a swiss roll (a 2-D sheet) rotated into 20 dimensions, so the local dimension the MGMs
report should be 2 for most nodes.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import make_swiss_roll

from leafscope.nnk import NNKGraph, manifold_graph_metrics, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=600)
    args = parser.parse_args()
    roll, _ = make_swiss_roll(args.points, noise=0.0, random_state=0)
    rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((20, 20)))
    embeddings = np.hstack([roll, np.zeros((args.points, 17))]) @ rotation

    graph = NNKGraph(k=15, kernel="gaussian").fit(embeddings)
    degrees = np.array([len(n) for n in graph.neighbors_])
    print(f"NNK graph: {args.points} nodes, mean degree {degrees.mean():.2f} of k = 15")
    metrics = manifold_graph_metrics(graph, orientation=False)
    for name, stats in summarize(metrics).items():
        if stats is not None:
            print(f"{name}: mean {stats['mean']:.3f}, median {stats['median']:.3f}")
    dims = np.asarray(metrics.local_dim)
    print(f"local dimension 2 at {np.mean(dims == 2):.0%} of the nodes (the sheet is 2-D)")


if __name__ == "__main__":
    main()
