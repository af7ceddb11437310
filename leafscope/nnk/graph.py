"""NNK (non-negative kernel regression) neighbourhood graphs, scikit-learn style.

For each node i with exact k nearest neighbours S (faiss, the node itself excluded by index, so
duplicates of i stay candidates), NNK solves ``θ = argmin_{θ≥0} ½θᵀK_SSθ − K_Siᵀθ`` and keeps the
neighbours with θ_j > 0; the others are geometrically redundant (theory.md §5).

Kernels (both functions of the squared distance d², with K_ii = 1):

* ``gaussian``: ``exp(−d²/(2σ²))``. Default σ rule: ``σ = mean_i d(i, k-th neighbour) / 3``,
  i.e. the k-th neighbour lies on average three kernel widths away (kernel value
  ``e^{−4.5} ≈ 0.011``): the whole kNN candidate set stays inside the kernel's effective support
  and the kernel still decays across it.
* ``cosine``: ``½ + ½ cos`` = ``1 − d²/4`` on L2-normalised features. An all-zero feature vector
  has no direction; it is mapped to an extra unit coordinate, so that ``cos(0, x) = 0`` for x ≠ 0
  and two zero vectors are duplicates (``cos = 1``). This keeps the kernel a Gram matrix of unit
  vectors (positive semidefinite) and never produces NaN.

Two-neighbour rule (k = 2 candidates j, l; K_jj = K_ll = 1): the unconstrained solution is
``θ_j ∝ K_ij − K_il K_jl``, ``θ_l ∝ K_il − K_ij K_jl``, so both neighbours survive iff
``K_ij > K_il K_jl`` and ``K_il > K_ij K_jl`` (else only the closer one, with θ = its kernel value).
For the Gaussian kernel ``K_ij > K_il K_jl ⇔ d_ij² < d_il² + d_jl²``, i.e. the angle of triangle
(i, j, l) at l is acute: both survive iff the angles at j and at l are acute, whatever σ. For the
cosine kernel the statement stays in kernel values.

The neighbourhood kernels are built from ``G = D Dᵀ`` with ``D = X_S − x_i`` (float32 batched
matrix products), so distances to exact duplicates are exactly zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Literal

import faiss
import numpy as np
import scipy.sparse as sp
import torch

from leafscope.errors import InputError, NotFittedError
from leafscope.nnk.solver import solve_nnqp_inplace

__all__ = ["NNKGraph", "local_kernels", "prepare_features", "symmetrize_nnk"]

Kernel = Literal["gaussian", "cosine"]


class NNKGraph:
    """NNK graph of a point set.

    Args:
        k: number of nearest-neighbour candidates per node (``k < N``).
        kernel: ``"gaussian"`` (Euclidean features) or ``"cosine"`` (deep features).
        sigma: Gaussian width; ``None`` uses the σ rule (mean k-th neighbour distance / 3).
        symmetrize: ``"error"`` (reference rule: an edge exists only if both endpoints are in each
            other's kNN, and takes the weight of the endpoint with the smaller reconstruction
            error, dropping it when that weight is 0) or ``"max"`` (``max(W, Wᵀ)``, keeps
            one-sided edges).
        metric_batch_size: nodes whose neighbourhood kernels are built and solved together.
        device: torch device for the kernels and the solver (``"cpu"`` or ``"cuda"``).
        tol: KKT tolerance of the solver (a neighbour enters only if its gradient exceeds it).
        ridge: relative ridge of the solver (see :func:`leafscope.nnk.solver.solve_nnqp`).

    Attributes:
        weights_: (learned by :meth:`fit`, like all below) scipy.sparse CSR (N, N), symmetric,
            non-negative, zero diagonal.
        theta_: (N, k) float64 NNK weights of each node's own solve, aligned with
            ``knn_indices_``.
        neighbors_: list of N int64 arrays, the NNK neighbours of each node (θ > 0, kNN order).
        knn_indices_: (N, k) int64 exact kNN (self excluded).
        knn_distances_: (N, k) float32 Euclidean distances (of the normalised features for the
            cosine kernel).
        errors_: (N,) reconstruction errors ``1 − 2θᵀK_Si + θᵀK_SSθ``.
        sigma_: σ used (``None`` for the cosine kernel).
        timings_: seconds spent in the kNN search, the kernels + solves, the symmetrisation.
        n_features_in_: feature dimension.

    Examples:
        >>> X = np.arange(10.0)[:, None]  # ten points on a line
        >>> g = NNKGraph(k=4).fit(X)
        >>> sorted(g.neighbors_[5].tolist())  # of the 4 nearest, only the two sides are kept
        [4, 6]
        >>> W = g.weights_
        >>> bool((W != W.T).nnz == 0), W.shape
        (True, (10, 10))
    """

    def __init__(
        self,
        k: int = 15,
        kernel: Kernel = "gaussian",
        sigma: float | None = None,
        symmetrize: Literal["error", "max"] = "error",
        metric_batch_size: int = 1024,
        device: str = "cpu",
        tol: float = 1e-10,
        ridge: float = 1e-10,
    ) -> None:
        self.k = k
        self.kernel = kernel
        self.sigma = sigma
        self.symmetrize = symmetrize
        self.metric_batch_size = metric_batch_size
        self.device = device
        self.tol = tol
        self.ridge = ridge

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray | torch.Tensor) -> NNKGraph:
        """Build the graph of the rows of ``X``.

        Args:
            X: (N, D) features (any float dtype; torch tensors are moved to CPU).

        Returns:
            self.
        """
        self._check_params()
        Z = prepare_features(X, self.kernel)
        n = Z.shape[0]
        if n < self.k + 1:
            raise InputError(f"k={self.k} needs at least k+1 points, got N={n}: lower k")
        t0 = time.perf_counter()
        index = _build_index(Z, self.kernel)
        _, idx = index.search(Z, self.k + 1)
        idx = _drop_self(idx, self.k)
        t1 = time.perf_counter()
        self.sigma_ = self._sigma(Z, idx)
        theta, err, dist = self._solve_all(Z, Z, idx)
        t2 = time.perf_counter()
        self._index, self._Z = index, Z
        self.n_features_in_ = Z.shape[1] - (1 if self.kernel == "cosine" else 0)
        self.knn_indices_ = idx
        self.knn_distances_ = dist
        self.theta_ = theta
        self.errors_ = err
        self.neighbors_ = [row[t > 0] for row, t in zip(idx, theta, strict=True)]
        self.weights_ = symmetrize_nnk(idx, theta, err, self.symmetrize)
        self.timings_ = {
            "knn_s": t1 - t0,
            "kernels_and_solve_s": t2 - t1,
            "symmetrize_s": time.perf_counter() - t2,
        }
        return self

    def query(self, X_new: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """NNK neighbours of new points among the fitted points (out of sample).

        Args:
            X_new: (M, D) features in the same space as the fitted ones.

        Returns:
            (indices, weights): (M, k) int64 indices of the fitted points, NNK neighbours first in
            kNN order and -1 padding; (M, k) float64 weights θ (0 on padding).
        """
        self._check_fitted()
        Z = prepare_features(X_new, self.kernel)
        if Z.shape[1] != self._Z.shape[1]:
            raise InputError(
                f"X_new has {Z.shape[1]} features but the graph was fitted on "
                f"{self._Z.shape[1]}: pass features from the same layer"
            )
        _, idx = self._index.search(Z, self.k)
        theta, _, _ = self._solve_all(self._Z, Z, idx)
        order = np.argsort(theta <= 0, axis=1, kind="stable")
        theta = np.take_along_axis(theta, order, 1)
        idx = np.where(theta > 0, np.take_along_axis(idx, order, 1), -1)
        return idx, theta

    def to_edge_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The graph as PyTorch Geometric tensors.

        Returns:
            (edge_index, edge_weight): LongTensor (2, E) with both directions of every edge, and
            float32 tensor (E,).
        """
        self._check_fitted()
        coo = self.weights_.tocoo()
        edge_index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        return edge_index, torch.from_numpy(coo.data.astype(np.float32))

    # ------------------------------------------------------------------ internals
    def _sigma(self, Z: np.ndarray, idx: np.ndarray) -> float | None:
        if self.kernel == "cosine":
            return None
        if self.sigma is not None:
            return float(self.sigma)
        d_k = np.sqrt(np.maximum(((Z[idx[:, -1]] - Z) ** 2).sum(1, dtype=np.float64), 0.0))
        sigma = float(d_k.mean()) / 3.0
        return sigma if sigma > 0 else 1.0  # every point has >= k duplicates: any σ works

    def _solve_all(
        self, Z_ref: np.ndarray, Z_center: np.ndarray, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NNK weights, errors and candidate distances of every centre, batch by batch.

        Batches run on ``torch.get_num_threads()`` Python worker threads with one torch thread
        each (torch releases the GIL inside its kernels): the work is many small batched
        operations, for which one batch per core beats intra-op threading.
        """
        dev = torch.device(self.device)
        ref = torch.from_numpy(Z_ref).to(dev)
        cen = torch.from_numpy(Z_center).to(dev)
        idx_t = torch.from_numpy(idx).to(dev)
        m, k = idx.shape
        theta = torch.zeros(m, k, dtype=torch.float64)
        err = torch.zeros(m, dtype=torch.float64)
        dist = torch.zeros(m, k, dtype=torch.float32)
        # nodes per batch: at most metric_batch_size, and at most ~64 MB of gathered features
        bs = max(1, min(int(self.metric_batch_size), (1 << 26) // (4 * k * ref.shape[1])))
        local = threading.local()

        def work(s: int) -> None:
            e = min(s + bs, m)
            if not hasattr(local, "buffer"):
                local.buffer = torch.empty(bs * k * ref.shape[1], dtype=torch.float32, device=dev)
            K, kb, d2 = local_kernels(
                ref, cen[s:e], idx_t[s:e], self.kernel, self.sigma_, local.buffer
            )
            th, _, _ = solve_nnqp_inplace(K, kb, self.tol, self.ridge)  # K gains the ridge
            q = (th * torch.bmm(K, th[:, :, None]).squeeze(2)).sum(1)
            err[s:e] = (1.0 - 2.0 * (th * kb).sum(1) + q).clamp_min(0.0).cpu()
            theta[s:e] = th.cpu()
            dist[s:e] = d2.sqrt().cpu()

        workers = max(1, torch.get_num_threads()) if dev.type == "cpu" else 1
        with _torch_threads(1 if dev.type == "cpu" else torch.get_num_threads()):
            if workers == 1:
                for s in range(0, m, bs):
                    work(s)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(work, range(0, m, bs)))
        return theta.numpy(), err.numpy(), dist.numpy()

    def _check_params(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise InputError(f"k must be a positive integer, got {self.k!r}")
        if self.kernel not in ("gaussian", "cosine"):
            raise InputError(f"unknown kernel {self.kernel!r}: use 'gaussian' or 'cosine'")
        if self.symmetrize not in ("error", "max"):
            raise InputError(f"unknown symmetrize {self.symmetrize!r}: use 'error' or 'max'")
        if self.sigma is not None and not (np.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(f"sigma must be a positive number or None, got {self.sigma!r}")
        if int(self.metric_batch_size) < 1:
            raise InputError(f"metric_batch_size must be >= 1, got {self.metric_batch_size!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError("this NNKGraph is not fitted yet: call fit(X) first")


def prepare_features(X: np.ndarray | torch.Tensor, kernel: str) -> np.ndarray:
    """Features as a C-contiguous float32 array; for ``cosine`` L2-normalised with one extra
    coordinate equal to 1 for all-zero rows (so they are unit vectors too).

    Args:
        X: (N, D) features.
        kernel: ``"gaussian"`` or ``"cosine"``.

    Returns:
        (N, D) or, for cosine, (N, D + 1) float32 array.
    """
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"X must be a non-empty 2-D array (N, D), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"X must be numeric, got dtype {arr.dtype}")
    Z = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(Z).all(1)
    if bad.any():
        raise InputError(
            f"X contains NaN or inf in row {int(np.flatnonzero(bad)[0])}: clean or drop those rows"
        )
    if kernel == "cosine":
        norm = np.sqrt((Z.astype(np.float64) ** 2).sum(1))
        zero = norm == 0
        Z = np.ascontiguousarray(
            np.hstack([Z / np.where(zero, 1.0, norm)[:, None], zero[:, None]]), dtype=np.float32
        )
    return Z


def local_kernels(
    Z: torch.Tensor,
    centers: torch.Tensor,
    idx: torch.Tensor,
    kernel: str,
    sigma: float | None,
    buffer: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel matrices of the neighbourhoods of a batch of nodes.

    Args:
        Z: (N, D) float32 prepared features of the candidates (see :func:`prepare_features`).
        centers: (B, D) float32 prepared features of the nodes.
        idx: (B, k) int64 candidate indices into ``Z``.
        kernel: ``"gaussian"`` or ``"cosine"``.
        sigma: Gaussian width (ignored for cosine).
        buffer: optional float32 scratch tensor with at least ``B·k·D`` elements (reused across
            calls to avoid allocating the gathered neighbourhoods every time).

    Returns:
        (K_SS (B, k, k) float64 with unit diagonal, K_Si (B, k) float64, d²_ij (B, k) float32).
    """
    B, k = idx.shape
    dim = Z.shape[1]
    flat = idx.reshape(-1)
    if buffer is not None and buffer.numel() >= B * k * dim:
        D = torch.index_select(Z, 0, flat, out=buffer[: B * k * dim].view(B * k, dim))
    else:
        D = torch.index_select(Z, 0, flat)
    D = D.view(B, k, dim)
    D -= centers[:, None, :]
    G = torch.bmm(D, D.transpose(1, 2))
    sq = torch.diagonal(G, dim1=1, dim2=2).clamp_min(0.0)
    # d²_jl = |D_j|² + |D_l|² − (G_jl + G_lj): every operation is commutative in (j, l), so the
    # result is exactly symmetric whatever the BLAS kernel did
    d2 = (
        (sq[:, :, None] + sq[:, None, :])
        .sub_(torch.add(G, G.transpose(1, 2), out=torch.empty_like(G)))
        .clamp_(min=0.0)
    )
    d2.diagonal(dim1=1, dim2=2).zero_()
    if kernel == "gaussian":
        c = -1.0 / (2.0 * sigma * sigma)
        K, kb = d2.mul_(c).exp_(), (sq * c).exp_()
    else:
        K, kb = d2.mul_(-0.25).add_(1.0).clamp_(0.0, 1.0), (1.0 - 0.25 * sq).clamp_(0.0, 1.0)
    return K.double(), kb.double(), sq


def symmetrize_nnk(
    idx: np.ndarray, theta: np.ndarray, errors: np.ndarray, mode: str = "error"
) -> sp.csr_matrix:
    """Symmetric sparse weight matrix from per-node NNK weights.

    Args:
        idx: (N, k) kNN indices. theta: (N, k) NNK weights aligned with ``idx``.
        errors: (N,) reconstruction errors.
        mode: ``"error"``: the edge {i, j} exists only if i ∈ kNN(j) and j ∈ kNN(i); its weight is
            θ from the endpoint with the smaller error (the larger θ on ties); zero weights are
            dropped. ``"max"``: ``W_ij = max(θ_ij, θ_ji)``, one-sided edges kept.

    Returns:
        scipy.sparse CSR (N, N), symmetric, zero diagonal.
    """
    n, k = idx.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = idx.reshape(-1).astype(np.int64)
    vals = theta.reshape(-1)
    if mode == "max":
        W = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        W = W.maximum(W.T).tocsr()
        W.eliminate_zeros()
        return W
    key = rows * n + cols
    # rows are already in order: sorting the candidates within each row sorts all keys
    order = (np.argsort(idx, axis=1) + (np.arange(n) * k)[:, None]).reshape(-1)
    skey = key[order]
    rev = cols * n + rows
    rorder = np.argsort(rev)  # sorted needles: searchsorted stays cache-friendly
    pos = np.empty_like(rorder)
    pos[rorder] = np.clip(np.searchsorted(skey, rev[rorder]), 0, skey.size - 1)
    mutual = skey[pos] == rev
    back = np.where(mutual, vals[order[pos]], 0.0)
    e_i, e_j = errors[rows], errors[cols]
    w = np.where(e_i < e_j, vals, np.where(e_j < e_i, back, np.maximum(vals, back)))
    keep = mutual & (w > 0) & (rows != cols)
    W = sp.csr_matrix((w[keep], (rows[keep], cols[keep])), shape=(n, n))
    W.sum_duplicates()
    return W


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _build_index(Z: np.ndarray, kernel: str) -> faiss.Index:
    index = faiss.IndexFlatIP(Z.shape[1]) if kernel == "cosine" else faiss.IndexFlatL2(Z.shape[1])
    index.add(Z)
    return index


def _drop_self(idx: np.ndarray, k: int) -> np.ndarray:
    """Remove each node from its own (k+1)-NN list by index (not position); rows where it is
    absent (more than k duplicates) drop their last candidate instead."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(idx, order, 1)
    if (out < 0).any():
        raise InputError("faiss returned fewer neighbours than k: lower k")
    return out.astype(np.int64)
