"""Benchmark: NNK graphs of the MNIST training images with exact vs approximate kNN candidates.

For ``index`` in flat (exact), IVF and HNSW, one ``NNKGraph(k).fit`` each on the same pixels
(60,000 images in [0, 1], flattened, Gaussian kernel): index build and kNN search times, kNN
recall against the flat lists (:func:`leafscope.nnk.index.knn_recall`), Jaccard overlap of the
NNK edge sets with the flat graph (:func:`leafscope.nnk.stability.edge_overlap`), the total fit
time, and the flat / approximate ratios. Then, on the flat candidates, the in-process solve route
against the sharded route (``ThreadPoolExecutor`` mapping :func:`solve_nnk_chunk`): times and
whether the weights are identical.

``--device cuda``: the kernels and solves run on the GPU (``NNKGraph(device=)``); the flat, IVF
and HNSW candidate searches stay on faiss's CPU indexes, the only ones leafscope builds (a GPU
faiss build, when installed, is reported but not used).

    PYTHONPATH=. .venv/bin/python bench/bench_nnk_index.py [--n 60000] [--k 15] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import torch
from bench_nnk import load_mnist
from benchdevice import add_device_flag, describe, parse_device, sync

from leafscope.io import write_json
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.index import knn_recall
from leafscope.nnk.stability import edge_overlap


def fit_one(X: np.ndarray, k: int, device: str = "cpu", **index: object) -> tuple[NNKGraph, float]:
    sync(device)
    t = time.perf_counter()
    g = NNKGraph(k=k, device=device, **index).fit(X)
    sync(device)
    return g, time.perf_counter() - t


def compare(flat: NNKGraph, t_flat: float, g: NNKGraph, t_fit: float) -> dict:
    """Times of ``g`` and its agreement with the flat graph."""
    ov = edge_overlap(g, flat)
    return {
        "params": g.index_params_,
        "index_build_s": g.timings_["index_build_s"],
        "knn_search_s": g.timings_["knn_search_s"],
        "knn_s": g.timings_["knn_s"],
        "solve_s": g.timings_["kernels_and_solve_s"],
        "fit_s": t_fit,
        "exact_fallback_nodes": g.knn_exact_fallback_,
        "knn_recall": knn_recall(g.knn_indices_, flat.knn_indices_),
        "edge_jaccard": ov.jaccard,
        "edges": ov.edges_a,
        "flat_knn_over_knn": flat.timings_["knn_s"] / g.timings_["knn_s"],
        "flat_fit_over_fit": t_flat / t_fit,
    }


def solve_routes(g: NNKGraph) -> dict:
    """In-process vs executor solves on the same candidates (the graph's own σ)."""
    Z, idx = g._Z, g.knn_indices_
    sync(g.device)
    t = time.perf_counter()
    a = g._solve_all(Z, Z, idx)
    t_in = time.perf_counter() - t
    t = time.perf_counter()
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        b = g._solve_sharded(Z, idx, pool)
    sync(g.device)
    t_ex = time.perf_counter() - t
    return {
        "in_process_s": t_in,
        "executor_s": t_ex,
        "executor_over_in_process": t_ex / t_in,
        "identical": all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--ef-search", type=int, default=64)
    ap.add_argument("--json", default=None)
    add_device_flag(ap)
    args = ap.parse_args()
    device = str(parse_device(ap, args.device))
    gpu_faiss = hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0
    print(
        f"{describe(device)}; torch threads {torch.get_num_threads()}, faiss threads "
        f"{faiss.omp_get_max_threads()}, faiss GPU build {'yes' if gpu_faiss else 'no'} (kNN "
        f"search on faiss CPU indexes), load average {os.getloadavg()}",
        flush=True,
    )
    X, _ = load_mnist(args.n)
    if device != "cpu":  # CUDA context and kernels loaded outside the timed fits
        fit_one(X[:200], min(args.k, 10), device)
    flat, t_flat = fit_one(X, args.k, device)
    res = {"n": len(X), "k": args.k, "device": device, "faiss_gpu_build": gpu_faiss}
    res["load_average_start"] = os.getloadavg()
    res["flat"] = {
        "index_build_s": flat.timings_["index_build_s"],
        "knn_s": flat.timings_["knn_s"],
        "solve_s": flat.timings_["kernels_and_solve_s"],
        "fit_s": t_flat,
        "edges": int(flat.weights_.getnnz() // 2),
    }
    print("flat", json.dumps(res["flat"]), flush=True)
    for name, settings in (
        ("ivf", {"index": "ivf", "nprobe": args.nprobe}),
        ("hnsw", {"index": "hnsw", "ef_search": args.ef_search}),
    ):
        g, t_fit = fit_one(X, args.k, device, **settings)
        res[name] = compare(flat, t_flat, g, t_fit)
        print(name, json.dumps(res[name]), flush=True)
    res["solve_routes"] = solve_routes(flat)
    res["load_average_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    if args.json:
        write_json(args.json, res)


if __name__ == "__main__":
    main()
