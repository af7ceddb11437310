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

Scale: the candidates can come from an approximate faiss index (``index="ivf"`` or ``"hnsw"``,
see :mod:`leafscope.nnk.index`) instead of the exact flat one, and the per-node solves run as
independent shards (:class:`NNKChunk`, solved by the top-level :func:`solve_nnk_chunk`) that
``fit(X, executor=...)`` hands to any object with an ordered ``map(fn, items)`` (a
:class:`MapExecutor`: threads, processes, a Dask client wrapper). Both routes run the same
arithmetic on the same batches and give identical results. This module depends on no executor
of leafscope: the commands parallelise over their own units (one graph each) instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from leafscope.errors import InputError, NotFittedError
from leafscope.nnk.index import IndexKind, build_index, resolve_index_params, search_knn
from leafscope.nnk.solver import solve_nnqp_inplace

__all__ = [
    "MapExecutor",
    "NNKChunk",
    "NNKChunkResult",
    "NNKGraph",
    "local_kernels",
    "prepare_features",
    "solve_nnk_chunk",
    "symmetrize_nnk",
]

Kernel = Literal["gaussian", "cosine"]


class MapExecutor(Protocol):
    """Anything with ``map(fn, iterable)`` returning the results in order (e.g. a
    ``concurrent.futures.Executor``)."""

    def map(self, fn: Callable[..., Any], iterable: Iterable[Any], /) -> Iterable[Any]: ...


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
        index: kNN candidate search: ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"`` (approximate;
            see :mod:`leafscope.nnk.index`).
        nlist, nprobe: IVF cells and cells scanned per query (``None``: ``min(√N, N/39)`` and
            ``min(nlist, 16)``); ``nprobe = nlist`` is exact.
        M, ef_search, ef_construction: HNSW links per node and beam widths (``ef_search=None``:
            ``max(64, 2(k+1))``).
        seed: seed of the IVF training sample and k-means.

    Attributes:
        weights_: (learned by :meth:`fit`, like all below) scipy.sparse CSR (N, N), symmetric,
            non-negative, zero diagonal.
        theta_: (N, k) float64 NNK weights of each node's own solve, aligned with
            ``knn_indices_``.
        neighbors_: list of N int64 arrays, the NNK neighbours of each node (θ > 0, kNN order).
        knn_indices_: (N, k) int64 kNN candidates (self excluded; exact for ``index="flat"``).
        knn_distances_: (N, k) float32 Euclidean distances (of the normalised features for the
            cosine kernel).
        errors_: (N,) reconstruction errors ``1 − 2θᵀK_Si + θᵀK_SSθ``.
        sigma_: σ used (``None`` for the cosine kernel).
        timings_: seconds: ``index_build_s``, ``knn_search_s``, their sum ``knn_s``,
            ``kernels_and_solve_s``, ``symmetrize_s``.
        index_params_: the index used and its resolved settings (defaults filled in).
        knn_exact_fallback_: nodes the approximate index returned fewer than k valid neighbours
            for (faiss id -1), searched exactly instead.
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
        index: IndexKind = "flat",
        nlist: int | None = None,
        nprobe: int | None = None,
        M: int = 32,
        ef_search: int | None = None,
        ef_construction: int = 64,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.kernel = kernel
        self.sigma = sigma
        self.symmetrize = symmetrize
        self.metric_batch_size = metric_batch_size
        self.device = device
        self.tol = tol
        self.ridge = ridge
        self.index = index
        self.nlist = nlist
        self.nprobe = nprobe
        self.M = M
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.seed = seed

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray | torch.Tensor, executor: MapExecutor | None = None) -> NNKGraph:
        """Build the graph of the rows of ``X``.

        Args:
            X: (N, D) features (any float dtype; torch tensors are moved to CPU).
            executor: ``None`` solves in this process (worker threads); otherwise the nodes are
                split into chunks of ``min(metric_batch_size, 2²⁶ / (4·k·D))`` nodes, each a
                self-contained :class:`NNKChunk` (its nodes' and candidates' features), and
                ``executor.map(solve_nnk_chunk, chunks)`` solves them. Same results either way.

        Returns:
            self.
        """
        self._check_params()
        if executor is not None and not callable(getattr(executor, "map", None)):
            raise InputError(
                f"executor must have a map(fn, iterable) method, got {type(executor).__name__}: "
                "pass e.g. a concurrent.futures executor or None"
            )
        Z = prepare_features(X, self.kernel)
        n = Z.shape[0]
        if n < self.k + 1:
            raise InputError(f"k={self.k} needs at least k+1 points, got N={n}: lower k")
        params = self._index_params(n)
        t0 = time.perf_counter()
        index = build_index(Z, self.kernel, params)
        t1 = time.perf_counter()
        idx, n_exact = search_knn(index, Z, Z, self.k, exclude_self=True, kernel=self.kernel)
        t2 = time.perf_counter()
        self.sigma_ = self._sigma(Z, idx)
        if executor is None:
            theta, err, dist = self._solve_all(Z, Z, idx)
        else:
            theta, err, dist = self._solve_sharded(Z, idx, executor)
        t3 = time.perf_counter()
        self._index, self._Z = index, Z
        self.index_params_ = params
        self.knn_exact_fallback_ = n_exact
        self.n_features_in_ = Z.shape[1] - (1 if self.kernel == "cosine" else 0)
        self.knn_indices_ = idx
        self.knn_distances_ = dist
        self.theta_ = theta
        self.errors_ = err
        self.neighbors_ = [row[t > 0] for row, t in zip(idx, theta, strict=True)]
        self.weights_ = symmetrize_nnk(idx, theta, err, self.symmetrize)
        self.timings_ = {
            "index_build_s": t1 - t0,
            "knn_search_s": t2 - t1,
            "knn_s": t2 - t0,
            "kernels_and_solve_s": t3 - t2,
            "symmetrize_s": time.perf_counter() - t3,
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
        idx, _ = search_knn(self._index, self._Z, Z, self.k, exclude_self=False, kernel=self.kernel)
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

    def _index_params(self, n: int) -> dict[str, Any]:
        return resolve_index_params(
            self.index,
            n,
            self.k,
            nlist=self.nlist,
            nprobe=self.nprobe,
            M=self.M,
            ef_search=self.ef_search,
            ef_construction=self.ef_construction,
            seed=self.seed,
        )

    def _batch_size(self, k: int, dim: int) -> int:
        """Nodes per batch: at most metric_batch_size and ~64 MB of gathered features."""
        return max(1, min(int(self.metric_batch_size), (1 << 26) // (4 * k * dim)))

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
        bs = self._batch_size(k, ref.shape[1])
        local = threading.local()

        def work(s: int) -> None:
            e = min(s + bs, m)
            if not hasattr(local, "buffer"):
                local.buffer = torch.empty(bs * k * ref.shape[1], dtype=torch.float32, device=dev)
            args = (self.kernel, self.sigma_, self.tol, self.ridge, local.buffer)
            th, er, d = _solve_batch(ref, cen[s:e], idx_t[s:e], *args)
            theta[s:e], err[s:e], dist[s:e] = th.cpu(), er.cpu(), d.cpu()

        workers = max(1, torch.get_num_threads()) if dev.type == "cpu" else 1
        with _torch_threads(1 if dev.type == "cpu" else torch.get_num_threads()):
            if workers == 1:
                for s in range(0, m, bs):
                    work(s)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(work, range(0, m, bs)))
        return theta.numpy(), err.numpy(), dist.numpy()

    def _solve_sharded(
        self, Z: np.ndarray, idx: np.ndarray, executor: MapExecutor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The solves of :meth:`_solve_all` (same batches) as chunks mapped by ``executor``."""
        m, k = idx.shape
        bs = self._batch_size(k, Z.shape[1])
        starts = range(0, m, bs)
        theta = np.zeros((m, k), np.float64)
        err = np.zeros(m, np.float64)
        dist = np.zeros((m, k), np.float32)
        seen = np.zeros(len(starts), bool)
        chunks = (self._chunk(Z, idx, s, min(s + bs, m)) for s in starts)
        for res in executor.map(solve_nnk_chunk, chunks):
            if not isinstance(res, NNKChunkResult) or res.start % bs or seen[res.start // bs]:
                raise InputError(
                    f"executor.map returned {type(res).__name__} {getattr(res, 'start', '')}: its "
                    "map must return solve_nnk_chunk's result for each chunk exactly once"
                )
            seen[res.start // bs] = True
            e = res.start + res.theta.shape[0]
            theta[res.start : e], err[res.start : e], dist[res.start : e] = res[1:]
        if not seen.all():
            raise InputError(
                f"executor.map returned {int(seen.sum())} results for {len(starts)} chunks: its "
                "map must return one result per chunk"
            )
        return theta, err, dist

    def _chunk(self, Z: np.ndarray, idx: np.ndarray, s: int, e: int) -> NNKChunk:
        rows, local = np.unique(idx[s:e], return_inverse=True)
        return NNKChunk(
            start=s,
            features=Z[rows],
            centers=Z[s:e].copy(),
            idx=local.reshape(e - s, idx.shape[1]).astype(np.int64),
            kernel=self.kernel,
            sigma=self.sigma_,
            tol=float(self.tol),
            ridge=float(self.ridge),
            device=str(self.device),
        )

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


@dataclass(frozen=True)
class NNKChunk:
    """A self-contained shard of NNK solves (picklable: numpy arrays and plain values).

    Attributes:
        start: index of the chunk's first node (its nodes are ``start … start + B − 1``).
        features: (U, D) float32 prepared features of the chunk's candidates.
        centers: (B, D) float32 prepared features of the chunk's nodes.
        idx: (B, k) int64 candidates of each node, as rows of ``features``.
        kernel, sigma, tol, ridge, device: the graph's settings (``sigma`` is the fitted σ).
    """

    start: int
    features: np.ndarray
    centers: np.ndarray
    idx: np.ndarray
    kernel: str
    sigma: float | None
    tol: float
    ridge: float
    device: str


class NNKChunkResult(NamedTuple):
    """Solutions of one :class:`NNKChunk`: node offset, θ (B, k) float64, reconstruction errors
    (B,) float64, candidate distances (B, k) float32."""

    start: int
    theta: np.ndarray
    errors: np.ndarray
    distances: np.ndarray


def solve_nnk_chunk(chunk: NNKChunk) -> NNKChunkResult:
    """Solve the NNK problems of one chunk (top-level, so executors can pickle it).

    Args:
        chunk: see :class:`NNKChunk`.

    Returns:
        :class:`NNKChunkResult` (numpy arrays on the CPU).
    """
    dev = _chunk_device(chunk.device)
    th, err, dist = _solve_batch(
        torch.from_numpy(chunk.features).to(dev),
        torch.from_numpy(chunk.centers).to(dev),
        torch.from_numpy(chunk.idx).to(dev),
        chunk.kernel,
        chunk.sigma,
        chunk.tol,
        chunk.ridge,
    )
    return NNKChunkResult(chunk.start, th.cpu().numpy(), err.cpu().numpy(), dist.cpu().numpy())


def _chunk_device(device: str) -> torch.device:
    """The device a chunk is solved on: ``device`` itself; a bare ``"cuda"`` is the current CUDA
    device of the process that solves it (the one a GPU worker selected)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return dev


def _solve_batch(
    ref: torch.Tensor,
    centers: torch.Tensor,
    idx: torch.Tensor,
    kernel: str,
    sigma: float | None,
    tol: float,
    ridge: float,
    buffer: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """θ (B, k), errors (B,) and candidate distances (B, k) of one batch of nodes."""
    K, kb, d2 = local_kernels(ref, centers, idx, kernel, sigma, buffer)
    th, _, _ = solve_nnqp_inplace(K, kb, tol, ridge)  # K gains the ridge
    q = (th * torch.bmm(K, th[:, :, None]).squeeze(2)).sum(1)
    err = (1.0 - 2.0 * (th * kb).sum(1) + q).clamp_min(0.0)
    return th, err, d2.sqrt()


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
