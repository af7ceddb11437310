"""Geometric stability: does the local geometry of the same points agree across training runs?

Two models (different seeds, or trained on different data subsets) map the same N points to
features; the NNK graph of each is built, and we compare

* **edge overlap**: Jaccard index |E_a ∩ E_b| / |E_a ∪ E_b| of the undirected edge sets (also the
  share of a's edges found in b and vice versa), for the NNK graphs and, as a reference, for the
  symmetrised kNN graphs the NNK graphs were selected from; ``chance`` is the Jaccard index two
  independent random graphs with the same edge counts would have in expectation;
* **MGM distribution distances**: 1-Wasserstein and Kolmogorov–Smirnov distances between the
  per-node distributions of each manifold graph metric.

A stable model gives high overlap and small distances; the NNK graph depends only on distances
between features, so two models whose features differ by an orthogonal map (e.g. permuted hidden
units) have identical graphs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.models.features import layer_features
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.metrics import ManifoldGraphMetrics, manifold_graph_metrics

__all__ = [
    "EdgeOverlap",
    "LayerStability",
    "edge_overlap",
    "geometric_stability",
    "knn_adjacency",
    "mgm_distances",
]

METRICS = ("n_neighbors", "diameter", "local_dim", "orientation")


@dataclass
class EdgeOverlap:
    """Overlap of two undirected edge sets on the same N nodes.

    ``jaccard`` = ``|A ∩ B| / |A ∪ B|``; ``a_in_b`` = ``|A ∩ B| / |A|``; ``b_in_a`` =
    ``|A ∩ B| / |B|``; ``chance`` = expected Jaccard of two independent uniform random graphs
    with ``|A|`` and ``|B|`` edges among the N(N − 1)/2 possible ones.
    """

    jaccard: float
    a_in_b: float
    b_in_a: float
    edges_a: int
    edges_b: int
    common: int
    chance: float


def _upper_pattern(W: sp.spmatrix | np.ndarray, name: str) -> sp.csr_matrix:
    W = sp.csr_matrix(W)
    if W.shape[0] != W.shape[1]:
        raise InputError(f"{name} must be a square (N, N) adjacency matrix, got {W.shape}")
    pattern = sp.triu((abs(W) + abs(W).T) > 0, k=1).astype(np.int8)
    return sp.csr_matrix(pattern)


def edge_overlap(a: NNKGraph | sp.spmatrix, b: NNKGraph | sp.spmatrix) -> EdgeOverlap:
    """Overlap of the edge sets of two graphs on the same nodes (weights are ignored).

    Args:
        a, b: fitted :class:`NNKGraph` objects (their ``weights_``) or (N, N) adjacency matrices;
            an edge is a non-zero entry (i, j) or (j, i), i ≠ j.

    Returns:
        :class:`EdgeOverlap`.

    Examples:
        >>> import scipy.sparse as sp
        >>> a = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 2])), shape=(3, 3))
        >>> b = sp.csr_matrix(([1.0], ([1], [0])), shape=(3, 3))
        >>> edge_overlap(a, b).jaccard
        0.5
    """
    A = _upper_pattern(a.weights_ if isinstance(a, NNKGraph) else a, "a")
    B = _upper_pattern(b.weights_ if isinstance(b, NNKGraph) else b, "b")
    if A.shape != B.shape:
        raise InputError(
            f"the graphs have {A.shape[0]} and {B.shape[0]} nodes: build both on the same points"
        )
    n = A.shape[0]
    na, nb = int(A.nnz), int(B.nnz)
    common = int(A.multiply(B).nnz)
    union = na + nb - common
    pairs = n * (n - 1) / 2
    expected_common = na * nb / pairs if pairs else 0.0
    chance_union = na + nb - expected_common
    return EdgeOverlap(
        jaccard=common / union if union else 1.0,
        a_in_b=common / na if na else 1.0,
        b_in_a=common / nb if nb else 1.0,
        edges_a=na,
        edges_b=nb,
        common=common,
        chance=expected_common / chance_union if chance_union else 1.0,
    )


def knn_adjacency(graph: NNKGraph) -> sp.csr_matrix:
    """(N, N) 0/1 adjacency of the symmetrised kNN graph a fitted NNK graph was selected from."""
    idx = graph.knn_indices_
    n, k = idx.shape
    rows = np.repeat(np.arange(n), k)
    cols = idx.reshape(-1)
    keep = cols >= 0
    A = sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n))
    return sp.csr_matrix(((A + A.T) > 0).astype(np.float64))


def mgm_distances(a: ManifoldGraphMetrics, b: ManifoldGraphMetrics) -> dict[str, dict[str, float]]:
    """Distances between the per-node distributions of each MGM of two graphs.

    Args:
        a, b: metrics of two graphs (NaN entries, e.g. orientation not computed, are dropped).

    Returns:
        ``{metric: {"wasserstein": W1, "ks": KS statistic}}`` for every metric with values in
        both (W1 in the metric's own units: neighbours, distance, dimensions, radians).
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    out: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        u = np.asarray(getattr(a, metric), dtype=float)
        v = np.asarray(getattr(b, metric), dtype=float)
        u, v = u[np.isfinite(u)], v[np.isfinite(v)]
        if u.size == 0 or v.size == 0:
            continue
        out[metric] = {
            "wasserstein": float(wasserstein_distance(u, v)),
            "ks": float(ks_2samp(u, v, method="asymp").statistic),
        }
    return out


@dataclass
class LayerStability:
    """Stability of one layer across M models: one entry per model pair (i < j)."""

    layer: str
    pairs: list[tuple[int, int]]
    nnk_overlap: list[EdgeOverlap]
    knn_overlap: list[EdgeOverlap]
    mgm_distances: list[dict[str, dict[str, float]]]
    mgm_means: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Means over the model pairs: NNK / kNN Jaccard, chance Jaccard, W1 per metric."""
        out: dict[str, Any] = {
            "nnk_jaccard": float(np.mean([o.jaccard for o in self.nnk_overlap])),
            "knn_jaccard": float(np.mean([o.jaccard for o in self.knn_overlap])),
            "nnk_chance": float(np.mean([o.chance for o in self.nnk_overlap])),
            "nnk_edges": float(np.mean([o.edges_a for o in self.nnk_overlap])),
        }
        for metric in METRICS:
            w = [d[metric]["wasserstein"] for d in self.mgm_distances if metric in d]
            if w:
                out[f"{metric}_wasserstein"] = float(np.mean(w))
        return out

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary()
        return out

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> LayerStability:
        """The stability :meth:`to_json` wrote (its ``summary`` is recomputed)."""
        return cls(
            layer=str(record["layer"]),
            pairs=[(int(i), int(j)) for i, j in record["pairs"]],
            nnk_overlap=[EdgeOverlap(**o) for o in record["nnk_overlap"]],
            knn_overlap=[EdgeOverlap(**o) for o in record["knn_overlap"]],
            mgm_distances=list(record["mgm_distances"]),
            mgm_means=list(record.get("mgm_means", [])),
        )


def geometric_stability(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    layers: Sequence[str],
    *,
    k: int = 15,
    kernel: str = "cosine",
    orientation: bool = False,
    device: str | torch.device = "cpu",
) -> dict[str, LayerStability]:
    """Edge overlap and MGM distances of the NNK graphs of the same points under several models.

    Args:
        models: two or more models with the named layers (e.g. one per seed or data subset).
        images: (N, ...) inputs, the same for every model.
        layers: layer names (see :func:`leafscope.models.inspect.module_names`).
        k, kernel: NNK graph settings (k capped at N − 1).
        orientation: also compare the orientation MGM (slow on wide layers).
        device: where the forward passes and the NNK solves run.

    Returns:
        ``{layer: LayerStability}``.

    Examples:
        >>> from leafscope.testing import tiny_mlp
        >>> m = tiny_mlp(n_in=4, seed=0)
        >>> r = geometric_stability([m, m], torch.rand(40, 4), ["2"], k=8)
        >>> r["2"].summary()["nnk_jaccard"]
        1.0
    """
    if len(models) < 2:
        raise InputError(f"geometric stability compares models: pass at least 2, got {len(models)}")
    n = images.shape[0]
    if n < 3:
        raise InputError(f"need at least 3 points for an NNK graph, got {n}: pass more images")
    graphs: dict[str, list[NNKGraph]] = {name: [] for name in layers}
    metrics: dict[str, list[ManifoldGraphMetrics]] = {name: [] for name in layers}
    for model in models:
        feats = layer_features(model, images, list(layers), device=device)
        for name in layers:
            g = NNKGraph(k=min(k, n - 1), kernel=kernel, device=str(device))
            g.fit(feats[name])
            graphs[name].append(g)
            metrics[name].append(manifold_graph_metrics(g, orientation=orientation))
    out: dict[str, LayerStability] = {}
    pairs = list(itertools.combinations(range(len(models)), 2))
    compared = [m for m in METRICS if orientation or m != "orientation"]
    for name in layers:
        gs, ms = graphs[name], metrics[name]
        out[name] = LayerStability(
            layer=name,
            pairs=pairs,
            nnk_overlap=[edge_overlap(gs[i], gs[j]) for i, j in pairs],
            knn_overlap=[edge_overlap(*map(knn_adjacency, (gs[i], gs[j]))) for i, j in pairs],
            mgm_distances=[mgm_distances(ms[i], ms[j]) for i, j in pairs],
            mgm_means=[{m: float(np.nanmean(getattr(mm, m))) for m in compared} for mm in ms],
        )
    return out
