"""NNK candidate indexes (flat / IVF / HNSW), kNN recall, and the sharded (executor) solve route."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from leafscope.errors import InputError
from leafscope.nnk.graph import NNKChunk, NNKChunkResult, NNKGraph, solve_nnk_chunk
from leafscope.nnk.index import knn_recall, resolve_index_params, search_knn


def _exact_knn(X, k):
    d2 = ((X[:, None].astype(np.float64) - X[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


def test_knn_recall_hand_made():
    exact = np.array([[1, 2, 4], [0, 2, 3], [0, 1, 3]])
    assert knn_recall(exact, exact) == 1.0
    assert knn_recall(exact[:, ::-1], exact) == 1.0  # order is ignored
    approx = np.array([[2, 1, 3], [0, 2, -1], [4, 5, 6]])  # hits: 2 + 2 + 0 of 9
    assert knn_recall(approx, exact) == pytest.approx(4 / 9)
    assert knn_recall(np.array([[1, 1, 1]]), np.array([[1, 2, 3]])) == pytest.approx(1 / 3)
    assert knn_recall(np.array([[1, 2, 3, 4, 5]]), np.array([[5, 9]])) == 0.5  # different k
    with pytest.raises(InputError, match="same number of rows"):
        knn_recall(exact[:2], exact)
    with pytest.raises(InputError, match="integer"):
        knn_recall(exact.astype(float), exact)


class _StubIndex:
    """Returns fixed (k+1)-lists, like an approximate index that misranks or misses."""

    def __init__(self, raw):
        self.raw = np.asarray(raw)

    def search(self, Z, k):
        assert k == self.raw.shape[1]
        return np.zeros(self.raw.shape, np.float32), self.raw


def test_search_knn_self_exclusion_and_padding(rng):
    Z = rng.standard_normal((6, 3)).astype(np.float32)
    raw = [
        [0, 1, 2],  # self first
        [3, 1, 4],  # self second (after an equidistant point, say)
        [4, 5, 3],  # self missing: keep the first k
        [5, -1, -1],  # padded: too few valid ids -> exact search
        [2, -1, 3],  # padding between valid ids
        [5, 0, -1],  # self + padding: one valid id -> exact search
    ]
    out, n_exact = search_knn(_StubIndex(raw), Z, Z, 2, exclude_self=True, kernel="gaussian")
    exact = _exact_knn(Z, 2)
    np.testing.assert_array_equal(out[:3], [[1, 2], [3, 4], [4, 5]])
    np.testing.assert_array_equal(out[4], [2, 3])
    np.testing.assert_array_equal(out[[3, 5]], exact[[3, 5]])
    assert n_exact == 2 and out.dtype == np.int64
    q, n_q = search_knn(
        _StubIndex([[2, -1]]), Z, Z[:1] + 0.01, 2, exclude_self=False, kernel="gaussian"
    )
    assert n_q == 1 and q[0, 0] == 0  # the exact search keeps a query's duplicate


@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
@pytest.mark.parametrize(
    "settings",
    [
        {"index": "ivf", "nlist": 7, "nprobe": 7},
        {"index": "hnsw", "M": 16, "ef_search": 300, "ef_construction": 300},
    ],
)
def test_generous_approximate_index_equals_flat(rng, kernel, settings):
    X = rng.standard_normal((300, 6))
    flat = NNKGraph(k=10, kernel=kernel).fit(X)
    g = NNKGraph(k=10, kernel=kernel, **settings).fit(X)
    assert g.index_params_ == {**settings, **g.index_params_} and flat.index_params_ == {
        "index": "flat"
    }
    assert g.knn_exact_fallback_ == 0
    assert knn_recall(g.knn_indices_, flat.knn_indices_) == 1.0
    np.testing.assert_array_equal(g.knn_indices_, flat.knn_indices_)
    np.testing.assert_array_equal(g.theta_, flat.theta_)
    assert g.sigma_ == flat.sigma_ and (g.weights_ != flat.weights_).nnz == 0
    np.testing.assert_array_equal(flat.knn_indices_, _exact_knn(flat._Z, 10))


def test_ivf_small_nprobe_pads_and_falls_back(rng):
    """40 points per cell on average and k + 1 = 31 wanted from one cell: many cells are too
    small, faiss pads with -1, and those nodes are searched exactly."""
    X = rng.standard_normal((2000, 4))
    flat = NNKGraph(k=30).fit(X)
    g = NNKGraph(k=30, index="ivf", nlist=50, nprobe=1, seed=3).fit(X)
    assert g.index_params_ == {
        "index": "ivf",
        "nlist": 50,
        "nprobe": 1,
        "train_size": 2000,
        "seed": 3,
    }
    assert 0 < g.knn_exact_fallback_ < 2000
    idx = g.knn_indices_
    assert (idx >= 0).all() and not (idx == np.arange(2000)[:, None]).any()
    assert all(len(set(r)) == 30 for r in idx.tolist())
    assert 0.5 < knn_recall(idx, flat.knn_indices_) < 1.0
    W = g.weights_
    assert abs(W - W.T).max() == 0 and W.min() >= 0 and W.diagonal().max() == 0
    # the same seed gives the same index; another seed other cells
    again = NNKGraph(k=30, index="ivf", nlist=50, nprobe=1, seed=3).fit(X)
    np.testing.assert_array_equal(again.knn_indices_, idx)


def test_hnsw_tiny_beam_misses_self(rng):
    """A 2-link graph searched with beam k + 1 often does not return the node itself (and may
    pad): the first k ids other than the node are kept, never the node, never -1."""
    X = rng.standard_normal((400, 5))
    X[1] = X[0]  # a duplicate the index may rank before the node itself
    flat = NNKGraph(k=12).fit(X)
    g = NNKGraph(k=12, index="hnsw", M=2, ef_search=13, ef_construction=2).fit(X)
    _, raw = g._index.search(g._Z, 13)
    self_missing = ~(raw == np.arange(400)[:, None]).any(1) & (raw >= 0).all(1)
    assert self_missing.sum() > 20  # the case this test is about occurs
    idx = g.knn_indices_
    np.testing.assert_array_equal(idx[self_missing], raw[self_missing, :12])
    assert (idx >= 0).all() and not (idx == np.arange(400)[:, None]).any()
    assert all(len(set(r)) == 12 for r in idx.tolist())
    assert 0 < knn_recall(idx, flat.knn_indices_) < 0.9
    assert g.knn_exact_fallback_ < 400
    assert g.index_params_ == {"index": "hnsw", "M": 2, "ef_search": 13, "ef_construction": 2}


def test_default_index_settings():
    p = resolve_index_params("ivf", 10000, 15)
    assert p == {"index": "ivf", "nlist": 100, "nprobe": 16, "train_size": 6400, "seed": 0}
    assert resolve_index_params("ivf", 100, 5)["nlist"] == 2  # >= 39 training points a cell
    assert resolve_index_params("ivf", 100, 5, nprobe=50)["nprobe"] == 2
    assert resolve_index_params("hnsw", 100, 40)["ef_search"] == 82


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"index": "annoy"}, "unknown index 'annoy'"),
        ({"index": "ivf", "nlist": 0}, "nlist must be an integer >= 1"),
        ({"index": "ivf", "nlist": 500}, "nlist=500 exceeds the 50 points"),
        ({"index": "ivf", "nlist": 4, "nprobe": 5}, "nprobe=5 exceeds nlist=4"),
        ({"index": "ivf", "nprobe": 1.5}, "nprobe must be"),
        ({"index": "hnsw", "M": 1}, "M must be an integer >= 2"),
        ({"index": "hnsw", "ef_search": 0}, "ef_search must be"),
        ({"index": "hnsw", "ef_construction": None}, "ef_construction must be"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_bad_index_settings(kwargs, match):
    X = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(InputError, match=match):
        NNKGraph(k=3, **kwargs).fit(X)


class _ReverseExecutor:
    """Solves the chunks last to first, then returns the results in order."""

    def __init__(self):
        self.calls = 0

    def map(self, fn, iterable):
        items = list(iterable)
        self.calls += len(items)
        return [fn(c) for c in items[::-1]][::-1]


class _ShuffledExecutor:
    def map(self, fn, iterable):
        out = [fn(c) for c in iterable]
        return [out[i] for i in np.random.default_rng(1).permutation(len(out))]


class _LossyExecutor:
    def map(self, fn, iterable):
        return [fn(c) for c in iterable][:-1]


@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
def test_executor_route_equals_in_process(rng, kernel):
    X = rng.standard_normal((500, 7))
    ref = NNKGraph(k=9, kernel=kernel, metric_batch_size=37).fit(X)
    rev = _ReverseExecutor()
    with ThreadPoolExecutor(2) as pool:
        routes = [rev, pool, _ShuffledExecutor()]
        graphs = [NNKGraph(k=9, kernel=kernel, metric_batch_size=37).fit(X, ex) for ex in routes]
    assert rev.calls == -(-500 // 37)
    for g in graphs:
        np.testing.assert_array_equal(g.knn_indices_, ref.knn_indices_)
        np.testing.assert_array_equal(g.theta_, ref.theta_)
        np.testing.assert_array_equal(g.errors_, ref.errors_)
        np.testing.assert_array_equal(g.knn_distances_, ref.knn_distances_)
        assert (g.weights_ != ref.weights_).nnz == 0
    assert (ref.theta_ > 0).sum(1).mean() > 2  # a non-trivial graph


def test_chunks_are_self_contained_and_picklable(rng):
    X = rng.standard_normal((120, 4))
    g = NNKGraph(k=6, metric_batch_size=50).fit(X)
    chunks = []

    class Keep:
        def map(self, fn, iterable):
            chunks.extend(iterable)
            return [fn(c) for c in chunks]

    NNKGraph(k=6, metric_batch_size=50).fit(X, Keep())
    assert [c.start for c in chunks] == [0, 50, 100]
    c = pickle.loads(pickle.dumps(chunks[1]))
    assert isinstance(c, NNKChunk) and c.centers.shape == (50, 4) and c.idx.shape == (50, 6)
    np.testing.assert_array_equal(c.features[c.idx], g._Z[g.knn_indices_[50:100]])
    res = solve_nnk_chunk(c)
    assert isinstance(res, NNKChunkResult) and res.start == 50
    np.testing.assert_array_equal(res.theta, g.theta_[50:100])
    np.testing.assert_array_equal(res.errors, g.errors_[50:100])


def test_bad_executors(rng):
    X = rng.standard_normal((100, 3))
    with pytest.raises(InputError, match="map"):
        NNKGraph(k=4).fit(X, executor=object())
    with pytest.raises(InputError, match="one result per chunk"):
        NNKGraph(k=4, metric_batch_size=30).fit(X, _LossyExecutor())
