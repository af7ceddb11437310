"""Label propagation (harmonic function, Zhu–Ghahramani–Lafferty 2003) on a weighted graph.

With the graph Laplacian ``L = D − W`` split into labelled (l) and unlabelled (u) nodes, the
harmonic solution solves the Dirichlet problem ``L_uu F_u = W_ul Y_l`` (one column per class);
the prediction is the arg-max of ``F_u``. Systems with more than 3000 unknowns are solved by
Jacobi-preconditioned conjugate gradients (relative residual 1e-10), smaller ones by sparse LU.
A ridge ``eps · mean degree`` on ``L_uu`` keeps
components without any labelled node solvable (they get F = 0 and the first class).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from leafscope.errors import InputError
from leafscope.nnk.graph import NNKGraph

__all__ = ["harmonic_propagation", "knn_weights", "compare_propagation"]


def harmonic_propagation(
    W: sp.spmatrix, labels: np.ndarray, labelled: np.ndarray, *, eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic label propagation.

    Args:
        W: (N, N) symmetric non-negative sparse weights.
        labels: (N,) integer labels in [0, C) (only the labelled entries are read).
        labelled: (N,) boolean mask of the known labels.
        eps: relative ridge on ``L_uu``.

    Returns:
        (predictions (N,), F (N, C) harmonic class scores; labelled rows are one-hot).
    """
    W = sp.csr_matrix(W)
    labels = np.asarray(labels)
    labelled = np.asarray(labelled, dtype=bool)
    n = W.shape[0]
    if W.shape != (n, n) or labels.shape != (n,) or labelled.shape != (n,):
        raise InputError(
            f"W {W.shape}, labels {labels.shape} and labelled {labelled.shape} must describe the "
            "same N nodes"
        )
    if not labelled.any():
        raise InputError("no labelled node: mark at least one entry of `labelled` True")
    n_classes = int(labels[labelled].max()) + 1
    Y = np.zeros((n, n_classes))
    Y[np.flatnonzero(labelled), labels[labelled]] = 1.0
    deg = np.asarray(W.sum(1)).ravel()
    L = sp.diags(deg) - W
    u = np.flatnonzero(~labelled)
    l_idx = np.flatnonzero(labelled)
    F = Y.copy()
    if u.size:
        Luu = L[u][:, u] + sp.identity(u.size) * (eps * max(float(deg.mean()), 1e-300))
        rhs = W[u][:, l_idx] @ Y[l_idx]
        F[u] = _solve_spd(
            sp.csr_matrix(Luu), np.asarray(rhs.todense() if sp.issparse(rhs) else rhs)
        )
    return F.argmax(1), F


def _solve_spd(A: sp.csr_matrix, B: np.ndarray) -> np.ndarray:
    """Solve ``A X = B`` for a sparse SPD ``A``: a sparse LU for small systems, Jacobi-
    preconditioned conjugate gradients otherwise (LU fill-in explodes on kNN-type graphs)."""
    if A.shape[0] <= 3000:
        return spla.splu(sp.csc_matrix(A)).solve(B)
    d = A.diagonal()
    M = sp.diags(1.0 / np.where(d > 0, d, 1.0))
    out = np.zeros_like(B)
    for c in range(B.shape[1]):
        x, info = spla.cg(A, B[:, c], M=M, rtol=1e-10, atol=0.0, maxiter=20 * A.shape[0])
        if info != 0:
            x = spla.spsolve(sp.csc_matrix(A), B[:, c])
        out[:, c] = x
    return out


def knn_weights(graph: NNKGraph) -> sp.csr_matrix:
    """The kNN graph with the same candidates and kernel as a fitted NNK graph, symmetrised by
    max (the usual kNN baseline).

    Returns:
        (N, N) CSR matrix.
    """
    d2 = graph.knn_distances_.astype(np.float64) ** 2
    if graph.kernel == "gaussian":
        w = np.exp(-d2 / (2 * graph.sigma_**2))
    else:
        w = np.clip(1 - d2 / 4, 0, 1)
    n, k = graph.knn_indices_.shape
    W = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), graph.knn_indices_.ravel())), (n, n))
    W = W.maximum(W.T).tocsr()
    W.setdiag(0)
    W.eliminate_zeros()
    return W


def compare_propagation(
    X: np.ndarray,
    y: np.ndarray,
    fraction: float,
    *,
    k: int = 15,
    kernel: str = "gaussian",
    seed: int = 0,
    graph: NNKGraph | None = None,
    **graph_kwargs: Any,
) -> dict[str, float]:
    """Propagation error on the unlabelled points of an NNK graph and of the kNN graph.

    Args:
        X: (N, D) features. y: (N,) integer labels in [0, C).
        fraction: share of labelled points (stratification not enforced; at least one).
        k, kernel, seed, graph_kwargs: graph settings and the seed of the labelled subset.
        graph: an already fitted graph of ``X`` (then k, kernel and graph_kwargs are ignored).

    Returns:
        ``{"nnk_error", "knn_error", "n_labelled", "nnk_edges", "knn_edges"}``.
    """
    if not 0 < fraction < 1:
        raise InputError(f"fraction must be in (0, 1), got {fraction}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    labelled = np.zeros(n, dtype=bool)
    labelled[rng.choice(n, max(1, int(round(fraction * n))), replace=False)] = True
    g = graph if graph is not None else NNKGraph(k=k, kernel=kernel, **graph_kwargs).fit(X)
    out: dict[str, float] = {"n_labelled": int(labelled.sum())}
    for name, W in (("nnk", g.weights_), ("knn", knn_weights(g))):
        pred, _ = harmonic_propagation(W, y, labelled)
        out[f"{name}_error"] = float(np.mean(pred[~labelled] != y[~labelled]))
        out[f"{name}_edges"] = int(W.getnnz() // 2)
    return out
