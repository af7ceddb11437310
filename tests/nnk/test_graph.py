"""NNKGraph: geometry (two-neighbour rule, cubes, two moons), symmetry, duplicates, σ rule."""

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from leafscope.errors import InputError, NotFittedError
from leafscope.nnk.graph import NNKGraph, prepare_features


def _angles(P):
    """Interior angles (radians) at the three vertices of triangles P (T, 3, 2)."""
    out = []
    for a in range(3):
        u, v = P[:, (a + 1) % 3] - P[:, a], P[:, (a + 2) % 3] - P[:, a]
        c = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
        out.append(np.arccos(np.clip(c, -1, 1)))
    return np.stack(out, 1)


@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
def test_two_neighbour_rule(rng, kernel):
    """Node 0 with candidates 1, 2 keeps both iff K_01 > K_02 K_12 and K_02 > K_01 K_12; for the
    Gaussian kernel this is: the triangle's angles at nodes 1 and 2 are both acute."""
    checked = both = 0
    for _ in range(110):
        P = rng.standard_normal((3, 2 if kernel == "gaussian" else 3))
        g = NNKGraph(k=2, kernel=kernel, sigma=float(rng.uniform(0.3, 3))).fit(P)
        Z = prepare_features(P, kernel).astype(np.float64)
        d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
        K = np.exp(-d2 / (2 * g.sigma_**2)) if kernel == "gaussian" else 1 - d2 / 4
        c1, c2 = K[0, 1] - K[0, 2] * K[1, 2], K[0, 2] - K[0, 1] * K[1, 2]
        if min(abs(c1), abs(c2)) < 1e-6:
            continue
        theta0 = dict(zip(g.knn_indices_[0], g.theta_[0], strict=True))
        assert (theta0[1] > 0 and theta0[2] > 0) == (c1 > 0 and c2 > 0)
        if kernel == "gaussian":
            ang = _angles(P[None])[0]
            if np.abs(ang[1:] - np.pi / 2).min() > 1e-6:
                assert (c1 > 0 and c2 > 0) == bool((ang[1:] < np.pi / 2).all())
        checked += 1
        both += theta0[1] > 0 and theta0[2] > 0
    assert checked > 80 and 0 < both < checked  # both outcomes occur


def _cube(rng, n, d, ambient=100):
    X = np.zeros((n, ambient))
    X[:, :d] = rng.random((n, d))
    Q, _ = np.linalg.qr(rng.standard_normal((ambient, ambient)))
    return X @ Q


def test_cube_neighbours_grow_with_dimension(rng):
    k = 30
    means = [
        np.mean([len(a) for a in NNKGraph(k=k).fit(_cube(rng, 600, d)).neighbors_])
        for d in (1, 2, 4)
    ]
    assert means[0] < means[1] < means[2] < k / 2
    assert 1.5 < means[0] < 2.5  # a curve: the two sides


@pytest.mark.slow
def test_cube_neighbours_published_values(rng):
    """theory.md: N=2500, k=50 in R^100 gives about 4 / 17 / 40 for d = 2 / 5 / 10."""
    got = [
        np.mean([len(a) for a in NNKGraph(k=50).fit(_cube(rng, 2500, d)).neighbors_])
        for d in (2, 5, 10)
    ]
    assert 3.5 < got[0] < 4.5 and 12 < got[1] < 20 and 30 < got[2] < 45


def _moons(rng, n, noise=0.05):
    t = rng.uniform(0, np.pi, n)
    lab = rng.integers(0, 2, n)
    X = np.where(
        lab[:, None] == 0, np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)]
    )
    return X + noise * rng.standard_normal((n, 2)), lab


def test_two_moons_neighbours_plateau(rng):
    X, _ = _moons(rng, 1000)
    nnk = [np.mean([len(a) for a in NNKGraph(k=k).fit(X).neighbors_]) for k in (10, 20, 40)]
    assert 2.5 < nnk[-1] < 5.0  # theory.md: 3.5–3.75 per node
    assert nnk[2] - nnk[1] < 0.5 and nnk[2] < 1.3 * nnk[0]  # while kNN goes 10 -> 40


def test_weights_symmetric_and_subset_of_mutual_knn(rng):
    X = rng.standard_normal((300, 5))
    g = NNKGraph(k=10).fit(X)
    W = g.weights_
    assert abs(W - W.T).max() == 0 and W.min() >= 0 and W.diagonal().max() == 0
    n = X.shape[0]
    A = np.zeros((n, n), bool)
    A[np.repeat(np.arange(n), 10), g.knn_indices_.ravel()] = True
    rows, cols = W.nonzero()
    assert (A[rows, cols] & A[cols, rows]).all()
    # each edge carries the weight of the endpoint with the smaller error
    theta = np.zeros((n, n))
    theta[np.repeat(np.arange(n), 10), g.knn_indices_.ravel()] = g.theta_.ravel()
    e = g.errors_
    exp = np.where(e[rows] < e[cols], theta[rows, cols], theta[cols, rows])
    np.testing.assert_allclose(W[rows, cols].A1, exp)
    Wmax = NNKGraph(k=10, symmetrize="max").fit(X).weights_
    assert abs(Wmax - Wmax.T).max() == 0 and Wmax.getnnz() >= W.getnnz()


def _nnls_reference(X, k, sigma):
    """Exact kNN (numpy) and one scipy NNLS solve per node: θ = argmin_{θ≥0} ½θᵀKθ − bᵀθ
    written as min ‖Lᵀθ − L⁻¹b‖² with K = LLᵀ. Returns candidates (N, k), θ (N, k), errors (N,)
    and each solve's margin (N,): its smallest positive weight or off-support KKT gradient."""
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    knn = np.argsort(d2, axis=1, kind="stable")[:, :k]
    theta, err = np.zeros((len(X), k)), np.zeros(len(X))
    margin = np.zeros(len(X))  # distance of the solve from a support change
    for i, S in enumerate(knn):
        K = np.exp(-((X[S][:, None] - X[S][None]) ** 2).sum(-1) / (2 * sigma**2))
        b = np.exp(-d2[i, S] / (2 * sigma**2))
        L = np.linalg.cholesky(K)
        theta[i] = nnls(L.T, np.linalg.solve(L, b))[0]
        err[i] = 1 - 2 * theta[i] @ b + theta[i] @ K @ theta[i]
        grad = K @ theta[i] - b  # KKT: 0 on the support, >= 0 off it
        margin[i] = min(theta[i][theta[i] > 0].min(), grad[theta[i] == 0].min(initial=np.inf))
    return knn, theta, err, margin


def test_edges_equal_independent_nnls(rng):
    """Every edge the reference rule admits is present, and no other: per node, the kNN
    candidates with a positive scipy NNLS weight are exactly its NNK neighbours; an edge (i, j)
    exists iff i and j are mutual kNN and the endpoint with the smaller error keeps the other."""
    X, k = rng.standard_normal((200, 4)), 8
    g = NNKGraph(k=k).fit(X)
    knn, theta, err, margin = _nnls_reference(X, k, g.sigma_)
    np.testing.assert_array_equal(np.sort(g.knn_indices_, 1), np.sort(knn, 1))
    # a solve within 1e-9 of a support change may go either way in float32 kernels
    clear = margin > 1e-9
    assert clear.mean() > 0.95
    for i in np.flatnonzero(clear):
        assert set(g.neighbors_[i].tolist()) == set(knn[i, theta[i] > 0].tolist()), i
        order = np.argsort(g.knn_indices_[i])
        np.testing.assert_allclose(g.theta_[i][order], theta[i][np.argsort(knn[i])], atol=1e-5)
    np.testing.assert_allclose(g.errors_, err, atol=1e-6)
    n = len(X)
    T = np.zeros((n, n))
    T[np.repeat(np.arange(n), k), knn.ravel()] = theta.ravel()
    A = np.zeros((n, n), bool)
    A[np.repeat(np.arange(n), k), knn.ravel()] = True
    mutual = A & A.T
    keep = np.where(err[:, None] < err[None, :], T, T.T) > 0
    expected = mutual & keep
    got = g.weights_.toarray() > 0
    assert expected.sum() > 2 * n  # a non-trivial graph
    decided = clear[:, None] & clear[None, :]
    assert not (got & ~expected & decided).any()  # no edge the rule rejects
    assert not (expected & ~got & decided).any()  # no valid edge missing


def test_duplicates_and_self_exclusion(rng):
    X = rng.standard_normal((60, 3))
    X[1] = X[0]
    g = NNKGraph(k=5).fit(X)
    assert not (g.knn_indices_ == np.arange(60)[:, None]).any()
    assert g.knn_indices_[0, 0] == 1 and g.knn_indices_[1, 0] == 0
    np.testing.assert_allclose(g.theta_[0], np.eye(5)[0], atol=1e-6)  # only the duplicate
    assert g.errors_[0] < 1e-6 and np.isfinite(g.weights_.data).all()
    assert g.weights_[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_many_duplicates_and_zero_vectors_cosine(rng):
    X = rng.standard_normal((40, 4))
    X[:8] = 0.0  # all-zero feature vectors
    X[8:20] = X[8]  # more duplicates than k
    g = NNKGraph(k=5, kernel="cosine").fit(X)
    assert np.isfinite(g.theta_).all() and np.isfinite(g.errors_).all()
    assert np.isfinite(g.weights_.data).all()
    assert not (g.knn_indices_ == np.arange(40)[:, None]).any()
    assert set(g.neighbors_[0].tolist()) <= set(range(8))  # zero vectors are duplicates
    Xg = X.copy()
    Xg[:8] = 0.0
    assert np.isfinite(NNKGraph(k=5).fit(Xg).weights_.data).all()


def test_sigma_rule_and_errors(rng):
    X = np.arange(20, dtype=float)[:, None]  # line, spacing 1; k=2: ends see 2, interior 1
    g = NNKGraph(k=2).fit(X)
    assert g.sigma_ == pytest.approx(((18 * 1 + 2 * 2) / 20) / 3)
    np.testing.assert_allclose(g.knn_distances_[5], [1, 1])
    Y = rng.standard_normal((80, 3))
    g = NNKGraph(k=6, sigma=1.3).fit(Y)
    i, S = 7, g.knn_indices_[7]
    K = np.exp(-((Y[S][:, None] - Y[S][None]) ** 2).sum(-1) / (2 * 1.3**2))
    b = np.exp(-((Y[S] - Y[i]) ** 2).sum(-1) / (2 * 1.3**2))
    th = g.theta_[i]
    assert g.errors_[i] == pytest.approx(1 - 2 * th @ b + th @ K @ th, abs=1e-6)


def test_query_and_edge_index(rng):
    X = rng.standard_normal((100, 4))
    g = NNKGraph(k=8).fit(torch.from_numpy(X))
    idx, w = g.query(X[:3])
    np.testing.assert_array_equal(idx[:, 0], [0, 1, 2])  # a fitted point is its own duplicate
    np.testing.assert_allclose(w[:, 0], 1.0, atol=1e-6)
    idx, w = g.query(rng.standard_normal((5, 4)))
    assert ((idx >= 0) == (w > 0)).all() and (w >= 0).all()
    ei, ew = g.to_edge_index()
    assert ei.dtype == torch.long and ei.shape == (2, g.weights_.getnnz())
    np.testing.assert_allclose(
        ew.numpy(), g.weights_[ei[0].numpy().copy(), ei[1].numpy().copy()].A1, rtol=1e-6
    )


def test_errors():
    with pytest.raises(NotFittedError):
        NNKGraph().to_edge_index()
    with pytest.raises(InputError, match="k=5"):
        NNKGraph(k=5).fit(np.zeros((4, 2)))
    with pytest.raises(InputError, match="kernel"):
        NNKGraph(kernel="rbf").fit(np.zeros((4, 2)))
    with pytest.raises(InputError, match="NaN"):
        NNKGraph(k=1).fit(np.array([[0.0], [np.nan], [1.0]]))
    g = NNKGraph(k=2).fit(np.random.default_rng(0).standard_normal((10, 3)))
    with pytest.raises(InputError, match="features"):
        g.query(np.zeros((2, 4)))
