"""kNN candidate search for NNK graphs: exact (flat) or approximate (IVF, HNSW) faiss indexes.

The features arrive prepared (:func:`leafscope.nnk.graph.prepare_features`): the cosine kernel
searches by inner product on unit rows, the Gaussian kernel by squared L2 distance.

* ``flat``: exhaustive exact search (``IndexFlatIP`` / ``IndexFlatL2``).
* ``ivf``: ``IndexIVFFlat``: k-means into ``nlist`` cells (spherical k-means for cosine),
  trained on a seeded random sample of the rows; a query scans its ``nprobe`` nearest cells.
  With ``nprobe = nlist`` every cell is scanned and the search is exact.
* ``hnsw``: ``IndexHNSWFlat``: a navigable small-world graph with ``M`` links per node, built
  with beam width ``ef_construction`` and searched with beam width ``ef_search``. Its
  construction runs on faiss's OpenMP threads and is not bit-reproducible across thread counts.

Approximate indexes may miss the query point itself, rank it after a duplicate, or return fewer
than the requested neighbours (faiss pads with id -1, e.g. IVF when the probed cells hold fewer
than k + 1 points). :func:`search_knn` excludes the query point by id wherever it appears, keeps
the first k valid ids, and searches the rows that still lack k neighbours exactly (counted).
"""

from __future__ import annotations

from typing import Any, Literal

import faiss
import numpy as np

from leafscope.errors import InputError

__all__ = ["INDEX_KINDS", "build_index", "knn_recall", "resolve_index_params", "search_knn"]

IndexKind = Literal["flat", "ivf", "hnsw"]
INDEX_KINDS = ("flat", "ivf", "hnsw")


def resolve_index_params(
    kind: str,
    n: int,
    k: int,
    *,
    nlist: int | None = None,
    nprobe: int | None = None,
    M: int = 32,
    ef_search: int | None = None,
    ef_construction: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Check the index settings and fill in the defaults for ``n`` points and ``k`` neighbours.

    Defaults: ``nlist = min(round(√n), n // 39)`` (faiss wants ≥ 39 training points per cell),
    at least 1; ``nprobe = min(nlist, 16)``; ``ef_search = max(64, 2(k + 1))``. IVF trains on
    ``min(n, 64·nlist)`` rows drawn with ``seed``.

    Args:
        kind: ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        n: number of indexed points. k: neighbours wanted per query (without the point itself).
        nlist, nprobe: IVF cells and cells scanned per query (``nprobe ≤ nlist ≤ n``).
        M: HNSW links per node (≥ 2). ef_search, ef_construction: HNSW beam widths (≥ 1).
        seed: seed of the IVF training sample and of its k-means.

    Returns:
        dict with ``"index"`` (the kind) and the settings that kind uses.
    """
    if kind not in INDEX_KINDS:
        raise InputError(f"unknown index {kind!r}: use 'flat', 'ivf' or 'hnsw'")
    _check_int("seed", seed, 0, allow_none=False)
    if kind == "flat":
        return {"index": "flat"}
    if kind == "ivf":
        _check_int("nlist", nlist, 1)
        _check_int("nprobe", nprobe, 1)
        if nlist is not None and nlist > n:
            raise InputError(f"nlist={nlist} exceeds the {n} points to index: use nlist <= {n}")
        n_cells = int(nlist) if nlist is not None else max(1, min(round(np.sqrt(n)), n // 39))
        if nprobe is not None and nlist is not None and nprobe > nlist:
            raise InputError(f"nprobe={nprobe} exceeds nlist={nlist}: use nprobe <= nlist")
        probe = min(int(nprobe), n_cells) if nprobe is not None else min(n_cells, 16)
        return {
            "index": "ivf",
            "nlist": n_cells,
            "nprobe": probe,
            "train_size": min(n, 64 * n_cells),
            "seed": int(seed),
        }
    _check_int("M", M, 2, allow_none=False)
    _check_int("ef_search", ef_search, 1)
    _check_int("ef_construction", ef_construction, 1, allow_none=False)
    return {
        "index": "hnsw",
        "M": int(M),
        "ef_search": int(ef_search) if ef_search is not None else max(64, 2 * (k + 1)),
        "ef_construction": int(ef_construction),
    }


def build_index(Z: np.ndarray, kernel: str, params: dict[str, Any]) -> faiss.Index:
    """A faiss index over the rows of ``Z``, filled and ready to search.

    Args:
        Z: (N, D) float32 C-contiguous prepared features.
        kernel: ``"cosine"`` (inner product) or ``"gaussian"`` (L2).
        params: output of :func:`resolve_index_params`.

    Returns:
        the faiss index.
    """
    d = Z.shape[1]
    ip = kernel == "cosine"
    metric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
    kind = params["index"]
    if kind == "flat":
        index = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
    elif kind == "ivf":
        quantizer = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, params["nlist"], metric)
        index.cp.seed = params["seed"]
        index.cp.spherical = ip
        rows = np.random.default_rng(params["seed"]).choice(
            Z.shape[0], params["train_size"], replace=False
        )
        index.train(np.ascontiguousarray(Z[np.sort(rows)]))
        index.nprobe = params["nprobe"]  # (faiss's wrapper keeps the quantizer alive)
    else:
        index = faiss.IndexHNSWFlat(d, params["M"], metric)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    index.add(Z)
    return index


def search_knn(
    index: faiss.Index,
    Z_index: np.ndarray,
    Z_query: np.ndarray,
    k: int,
    *,
    exclude_self: bool,
    kernel: str,
) -> tuple[np.ndarray, int]:
    """k nearest indexed points of each query, robust to what approximate indexes return.

    Args:
        index: faiss index over ``Z_index`` (see :func:`build_index`).
        Z_index: (N, D) float32 the indexed rows (for the exact search of deficient rows).
        Z_query: (M, D) float32 queries; with ``exclude_self`` they are the indexed rows
            themselves (M = N) and query i never gets id i, wherever the index ranks it.
        k: neighbours per query.
        exclude_self: drop each query's own id (searches k + 1).
        kernel: ``"cosine"`` (inner product) or ``"gaussian"`` (L2).

    Returns:
        ((M, k) int64 ids in the index's order, number of rows searched exactly because the
        index returned fewer than k valid ids for them).
    """
    m = Z_query.shape[0]
    _, raw = index.search(Z_query, k + int(exclude_self))
    out, short = _first_valid(raw, k, exclude_self)
    rows = np.flatnonzero(short)
    if rows.size:
        metric = faiss.METRIC_INNER_PRODUCT if kernel == "cosine" else faiss.METRIC_L2
        _, exact = faiss.knn(
            np.ascontiguousarray(Z_query[rows]), Z_index, k + int(exclude_self), metric=metric
        )
        self_ids = rows if exclude_self else None
        fixed, still = _first_valid(exact, k, exclude_self, self_ids)
        if still.any():
            raise InputError(
                f"fewer than k={k} neighbours exist for {int(still.sum())} of {m} points: lower k"
            )
        out[rows] = fixed
    return out, int(rows.size)


def knn_recall(approx_indices: np.ndarray, exact_indices: np.ndarray) -> float:
    """Recall of approximate kNN lists: the fraction of exact neighbours they contain.

    ``Σ_i |A_i ∩ E_i| / Σ_i |E_i|`` over rows i, ignoring order and -1 padding; ids repeated
    within a row count once.

    Args:
        approx_indices: (N, k_a) int ids found by an approximate search.
        exact_indices: (N, k_e) int exact neighbour ids (the reference).

    Returns:
        recall in [0, 1] (1.0 when the reference lists are empty).

    Examples:
        >>> knn_recall(np.array([[1, 2], [0, 3]]), np.array([[1, 2], [0, 2]]))
        0.75
    """
    A = np.asarray(approx_indices)
    E = np.asarray(exact_indices)
    if A.ndim != 2 or E.ndim != 2 or A.shape[0] != E.shape[0]:
        raise InputError(
            f"kNN lists must be 2-D with the same number of rows, got shapes {A.shape} and "
            f"{E.shape}: pass (N, k) index arrays of the same points"
        )
    for name, arr in (("approx_indices", A), ("exact_indices", E)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    width = int(max(A.max(initial=0), E.max(initial=0))) + 1
    ka = np.unique((np.arange(A.shape[0])[:, None] * width + A)[A >= 0])
    ke = np.unique((np.arange(E.shape[0])[:, None] * width + E)[E >= 0])
    if ke.size == 0:
        return 1.0
    return float(np.isin(ke, ka, assume_unique=True).sum() / ke.size)


def _first_valid(
    raw: np.ndarray, k: int, exclude_self: bool, self_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """First k ids of each row that are not -1 (nor the row's own id); rows with fewer valid ids
    are flagged (their tail is unspecified)."""
    ok = raw >= 0
    if exclude_self:
        ids = np.arange(raw.shape[0]) if self_ids is None else np.asarray(self_ids)
        ok &= raw != ids[:, None]
    order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(raw, order, 1).astype(np.int64), ok.sum(1) < k


def _check_int(name: str, value: object, low: int, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        what = f"an integer >= {low}" + (" or None" if allow_none else "")
        raise InputError(f"{name} must be {what}, got {value!r}")
