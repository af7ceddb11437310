"""Benchmark: NNK graph of the MNIST training images (pixels in [0, 1], flattened), k = 50.

Times, in one run: the faiss exact kNN search alone (IndexFlatL2, k + 1 with self), the full
``NNKGraph.fit``, its post-kNN part (neighbourhood kernels + solves + symmetrisation), and a
per-node loop (gather, difference Gram, kernel, Cholesky, ``scipy.optimize.nnls``) on a random
sample of nodes, extrapolated to all nodes; checks the batched weights against the loop's on the
sample; reports peak memory. Optionally label propagation (1% labels) on an MNIST subset.

``--device cuda`` runs the neighbourhood kernels and the solves on the GPU (``NNKGraph(device=)``);
the kNN search stays on faiss's CPU index (leafscope's index choice is CPU faiss). When the faiss
build has GPU support, the exact kNN search alone is also timed on a GPU flat index.

    PYTHONPATH=. .venv/bin/python bench/bench_nnk.py [--n 60000] [--k 50] [--sample 2000] \
        [--device cuda]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import time
from pathlib import Path

import faiss
import numpy as np
import scipy.linalg as sl
import scipy.optimize as so
import torch
from benchdevice import add_device_flag, describe, parse_device, timed
from threadpoolctl import threadpool_limits

from leafscope.io import write_json
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.propagation import compare_propagation


def load_mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` MNIST training images as (n, 784) float32 in [0, 1] and their labels."""
    try:
        from leafscope.data.images import load_images
        from leafscope.testing import shared_data_dir

        ds = load_images("mnist", "train", data_dir=shared_data_dir(), download=False, limit=n)
        return ds.images.reshape(len(ds), -1).numpy(), ds.labels.numpy()
    except ImportError:
        root = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
        with gzip.open(root / "train-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:n]
        with gzip.open(root / "train-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
        return (x / 255.0).astype(np.float32), y.astype(np.int64)


def scipy_loop(X: np.ndarray, idx: np.ndarray, nodes: np.ndarray, sigma: float) -> tuple:
    """Per-node reference: kernel sub-matrices and scipy nnls, one node at a time."""
    out = np.zeros((len(nodes), idx.shape[1]))
    t = time.perf_counter()
    with threadpool_limits(1):  # tiny BLAS calls: threads only add synchronisation
        _loop(X, idx, nodes, sigma, out)
    return out, time.perf_counter() - t


def _loop(X: np.ndarray, idx: np.ndarray, nodes: np.ndarray, sigma: float, out: np.ndarray) -> None:
    for r, i in enumerate(nodes):
        D = X[idx[i]] - X[i]
        G = D @ D.T
        sq = np.diag(G)
        K = np.exp(-np.maximum(sq[:, None] + sq[None] - 2 * G, 0) / (2 * sigma**2)).astype(float)
        b = np.exp(-sq / (2 * sigma**2)).astype(float)
        L = np.linalg.cholesky(K + 1e-10 * np.eye(len(b)))
        out[r], _ = so.nnls(L.T, sl.solve_triangular(L, b, lower=True))


def faiss_gpu_knn(X: np.ndarray, k: int) -> float | None:
    """Seconds of the exact kNN search on a faiss GPU flat index, or None without faiss GPU."""
    if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() < 1:
        return None
    t = time.perf_counter()
    index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(X.shape[1]))
    index.add(X)
    index.search(X, k + 1)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--propagation-n", type=int, default=10000, help="0 to skip")
    ap.add_argument("--json", default=None)
    add_device_flag(ap)
    args = ap.parse_args()
    device = parse_device(ap, args.device)
    gpu_faiss = hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0
    print(
        f"{describe(device)}; torch threads {torch.get_num_threads()}, faiss threads "
        f"{faiss.omp_get_max_threads()}, faiss GPU {'yes' if gpu_faiss else 'no'}, "
        f"load average {os.getloadavg()}"
    )
    X, y = load_mnist(args.n)
    n, k = len(X), args.k

    t = time.perf_counter()
    index = faiss.IndexFlatL2(X.shape[1])
    index.add(X)
    index.search(X, k + 1)
    t_knn = time.perf_counter() - t
    print(f"faiss exact kNN alone: {t_knn:.1f} s", flush=True)

    t_knn_gpu = faiss_gpu_knn(X, k) if device.type == "cuda" else None
    if t_knn_gpu is not None:
        print(f"faiss exact kNN alone on the GPU: {t_knn_gpu:.1f} s", flush=True)

    if device.type == "cuda":  # CUDA context and kernels loaded outside the timed fit
        NNKGraph(k=min(k, 10), device=str(device)).fit(X[:200])
    g, t_fit = timed(lambda: NNKGraph(k=k, device=str(device)).fit(X), device)
    post = t_fit - g.timings_["knn_s"]
    print(f"NNKGraph.fit: {t_fit:.1f} s ({g.timings_}), post-kNN {post:.1f} s", flush=True)

    nodes = np.random.default_rng(0).choice(n, min(args.sample, n), replace=False)
    ref, t_loop = scipy_loop(X, g.knn_indices_, nodes, g.sigma_)
    per_node = t_loop / len(nodes)
    loop_total = per_node * n
    diff = float(np.abs(ref - g.theta_[nodes]).max())
    supp = float(np.mean((ref > 0) == (g.theta_[nodes] > 0)))
    print(
        f"scipy loop: {per_node * 1e3:.3f} ms/node -> {loop_total:.1f} s for {n} nodes", flush=True
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {
        "n": n,
        "k": k,
        "device": str(device),
        "faiss_gpu": gpu_faiss,
        "faiss_knn_s": t_knn,
        "faiss_gpu_knn_s": t_knn_gpu,
        "nnk_fit_s": t_fit,
        "nnk_fit_knn_s": g.timings_["knn_s"],
        "nnk_post_knn_s": post,
        "total_over_knn": t_fit / t_knn,
        "scipy_loop_ms_per_node": per_node * 1e3,
        "scipy_loop_extrapolated_s": loop_total,
        "scipy_loop_over_post_knn": loop_total / post,
        "sample_max_abs_weight_diff": diff,
        "sample_support_agreement": supp,
        "nnk_neighbors_mean": float((g.theta_ > 0).sum(1).mean()),
        "edges_undirected": int(g.weights_.getnnz() // 2),
        "sigma": g.sigma_,
        "peak_rss_mib": peak,
        "load_average_end": os.getloadavg(),
    }
    if args.propagation_n:
        m = min(args.propagation_n, n)
        gm = NNKGraph(k=k, device=str(device)).fit(X[:m])
        res["propagation_1pct"] = {
            f"seed{s}": compare_propagation(X[:m], y[:m], 0.01, seed=s, graph=gm) for s in range(3)
        }
    print(json.dumps(res, indent=2))
    if args.json:
        write_json(args.json, res)


if __name__ == "__main__":
    main()
