"""Manifold graph metrics (MGMs) of an NNK graph (theory.md §5).

Per node i with NNK neighbours N(i) (its own solve, θ_j > 0) and the difference vectors
``v_j = x_j − x_i`` (of the prepared features: L2-normalised for the cosine kernel):

* ``n_neighbors``: |N(i)|;
* ``diameter``: largest distance between two points of N(i) (the polytope diameter; in [0, 2]
  for the cosine kernel; 0 when |N(i)| < 2);
* ``local_dim``: number of principal components of {v_j} (uncentred PCA: the local tangent
  vectors from x_i) whose variance is at least ``dim_threshold`` times the largest one;
* ``orientation``: mean over j ∈ N(i) of the mean principal angle (radians, in [0, π/2]) between
  the local subspaces of i and j, each spanned by its first ``local_dim`` principal directions
  (the smaller of the two dimensions is compared): 0 when neighbouring tangent spaces are
  aligned (flat manifold), larger where the manifold bends (curvature).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from leafscope.errors import InputError, NotFittedError
from leafscope.nnk.graph import NNKGraph

__all__ = ["ManifoldGraphMetrics", "manifold_graph_metrics", "summarize"]


@dataclass
class ManifoldGraphMetrics:
    """MGMs of every node of a graph (arrays of shape (N,)); ``orientation`` is NaN for nodes
    whose subspace is empty or not computed."""

    n_neighbors: np.ndarray
    diameter: np.ndarray
    local_dim: np.ndarray
    orientation: np.ndarray
    dim_threshold: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, bins: int = 20) -> dict[str, Any]:
        """Per-metric mean / median / std / histogram (see :func:`summarize`)."""
        return summarize(self, bins=bins)

    def to_json(self) -> dict[str, Any]:
        return {"dim_threshold": self.dim_threshold, **self.summary()}


def manifold_graph_metrics(
    graph: NNKGraph,
    *,
    dim_threshold: float = 0.1,
    orientation: bool = True,
    batch_size: int = 1024,
) -> ManifoldGraphMetrics:
    """Compute the MGMs of a fitted :class:`NNKGraph`.

    Args:
        graph: fitted graph (its prepared features are used).
        dim_threshold: a principal component counts towards the local dimension if its variance
            is at least this fraction of the largest variance (default 0.1 = 10%).
        orientation: also compute the principal-angle orientation metric (costs one
            (D × local_dim) basis per node in memory, float32).
        batch_size: nodes processed together.

    Returns:
        :class:`ManifoldGraphMetrics`.
    """
    if not hasattr(graph, "weights_"):
        raise NotFittedError("the NNKGraph is not fitted: call graph.fit(X) first")
    if not 0 < dim_threshold <= 1:
        raise InputError(f"dim_threshold must be in (0, 1], got {dim_threshold}")
    Z = _row_space_coordinates(torch.from_numpy(graph._Z))
    theta = torch.from_numpy(graph.theta_)
    idx = torch.from_numpy(graph.knn_indices_)
    n, k = idx.shape
    mask = theta > 0
    counts = mask.sum(1)
    diam = torch.zeros(n, dtype=torch.float64)
    ldim = torch.zeros(n, dtype=torch.long)
    r_max = int(counts.max()) if n else 0
    bases = None
    if orientation and r_max > 0:
        mem = n * Z.shape[1] * r_max * 4
        if mem > 2 * 2**30:
            raise InputError(
                f"orientation needs {mem / 2**30:.1f} GiB for {n} nodes of dimension {Z.shape[1]}: "
                "pass orientation=False or fit the graph on a subsample"
            )
        bases = torch.zeros(n, Z.shape[1], r_max, dtype=torch.float32)
    for s in range(0, n, batch_size):
        e = min(s + batch_size, n)
        m = mask[s:e]
        D = (Z[idx[s:e]] - Z[s:e, None, :]).double() * m[:, :, None]
        G = torch.bmm(D, D.transpose(1, 2))
        sq = torch.diagonal(G, dim1=1, dim2=2)
        d2 = (sq[:, :, None] + sq[:, None, :] - 2 * G).clamp_min(0)
        d2 = torch.where(m[:, :, None] & m[:, None, :], d2, 0.0)
        diam[s:e] = d2.amax((1, 2)).sqrt()
        lam, V = torch.linalg.eigh(G)  # ascending; variances of the uncentred PCA (× |N(i)|)
        lam = lam.clamp_min(0)
        top = lam[:, -1:]
        dims = ((lam >= dim_threshold * top) & (top > 0)).sum(1)
        ldim[s:e] = dims
        if bases is not None:
            # principal directions in feature space: U = Dᵀ V Λ^{-1/2}, largest first
            Vr = V.flip(2)[:, :, :r_max]
            lr = lam.flip(1)[:, :r_max]
            keep = torch.arange(r_max)[None, :] < dims[:, None]
            scale = torch.where(keep, lr.clamp_min(1e-300).rsqrt(), 0.0)
            U = torch.bmm(D.transpose(1, 2), Vr) * scale[:, None, :]
            bases[s:e] = U.float()
    orient = np.full(n, np.nan)
    if bases is not None:
        orient = _orientation(bases, ldim, idx, mask, batch_size)
    return ManifoldGraphMetrics(
        n_neighbors=counts.numpy(),
        diameter=diam.numpy(),
        local_dim=ldim.numpy(),
        orientation=orient,
        dim_threshold=dim_threshold,
    )


def _row_space_coordinates(Z: torch.Tensor) -> torch.Tensor:
    """Coordinates of the N rows of Z (N, D) in an orthonormal basis of their span when D > N.

    Every MGM depends on the features only through inner products of differences of rows, which
    an orthonormal change of basis keeps; with D > N this shrinks the per-node work by D / N.
    Z = Rᵀ Qᵀ from the thin QR of Zᵀ (float64), so the new rows are those of Rᵀ (N, N).
    """
    n, d = Z.shape
    if d <= n:
        return Z
    r = torch.linalg.qr(Z.double().T, mode="r")[1]
    return r.T.float().contiguous()


def _orientation(
    bases: torch.Tensor, ldim: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor, bs: int
) -> np.ndarray:
    n, k = idx.shape
    r = bases.shape[2]
    out = np.full(n, np.nan)
    ar = torch.arange(r)
    for s in range(0, n, bs):
        e = min(s + bs, n)
        Ui = bases[s:e]  # (B, D, r)
        nb = idx[s:e]
        total = torch.zeros(e - s, dtype=torch.float64)
        cnt = torch.zeros(e - s, dtype=torch.float64)
        for c in range(k):
            m = mask[s:e, c]
            if not bool(m.any()):
                continue
            j = nb[:, c]
            Uj = bases[j]
            C = torch.bmm(Ui.transpose(1, 2), Uj).double()  # (B, r, r)
            sv = torch.linalg.svdvals(C).clamp(0, 1)  # cosines of the principal angles
            dmin = torch.minimum(ldim[s:e], ldim[j])
            use = ar[None, :] < dmin[:, None]
            ang = torch.where(use, torch.arccos(sv), 0.0).sum(1) / dmin.clamp_min(1)
            ok = m & (dmin > 0)
            total += torch.where(ok, ang, 0.0)
            cnt += ok.double()
        out[s:e] = torch.where(cnt > 0, total / cnt.clamp_min(1), torch.nan).numpy()
    return out


def summarize(metrics: ManifoldGraphMetrics, bins: int = 20) -> dict[str, Any]:
    """Summary of each MGM over the nodes of one data set.

    Args:
        metrics: output of :func:`manifold_graph_metrics`.
        bins: histogram bins (integer metrics use one bin per value instead).

    Returns:
        ``{metric: {"mean", "median", "std", "min", "max", "hist": {"counts", "edges"}}}``;
        the median is numpy's (mean of the two middle values for an even count).
    """
    out: dict[str, Any] = {}
    for name in ("n_neighbors", "diameter", "local_dim", "orientation"):
        v = np.asarray(getattr(metrics, name), dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            out[name] = None
            continue
        if name in ("n_neighbors", "local_dim"):
            edges = np.arange(v.min(), v.max() + 2) - 0.5
        else:
            edges = np.histogram_bin_edges(v, bins=bins)
        counts, edges = np.histogram(v, bins=edges)
        out[name] = {
            "mean": float(v.mean()),
            "median": float(np.median(v)),
            "std": float(v.std()),
            "min": float(v.min()),
            "max": float(v.max()),
            "hist": {"counts": counts.tolist(), "edges": edges.tolist()},
        }
    return out
