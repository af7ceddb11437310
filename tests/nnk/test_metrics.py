"""Manifold graph metrics on data with known geometry."""

import numpy as np
import pytest

from leafscope.errors import InputError
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.metrics import manifold_graph_metrics, summarize


def _flat(rng, n, d, ambient=8):
    X = np.zeros((n, ambient))
    X[:, :d] = rng.random((n, d))
    Q, _ = np.linalg.qr(rng.standard_normal((ambient, ambient)))
    return X @ Q


@pytest.mark.parametrize("d", [1, 2, 3])
def test_local_dimension_of_flat_pieces(rng, d):
    m = manifold_graph_metrics(NNKGraph(k=20).fit(_flat(rng, 700, d)))
    assert np.median(m.local_dim) == d
    assert (m.local_dim <= m.n_neighbors).all()


def test_diameter_and_counts(rng):
    X = rng.standard_normal((200, 6))
    g = NNKGraph(k=10, kernel="cosine").fit(X)
    m = manifold_graph_metrics(g, orientation=False)
    np.testing.assert_array_equal(m.n_neighbors, [len(a) for a in g.neighbors_])
    assert (m.diameter >= 0).all() and (m.diameter <= 2 + 1e-6).all()
    i = 3
    U = X[g.neighbors_[i]] / np.linalg.norm(X[g.neighbors_[i]], axis=1, keepdims=True)
    ref = np.sqrt(((U[:, None] - U[None]) ** 2).sum(-1)).max()
    assert m.diameter[i] == pytest.approx(ref, abs=1e-5)
    assert np.isnan(m.orientation).all()


def test_orientation_flat_vs_curved(rng):
    flat = manifold_graph_metrics(NNKGraph(k=15).fit(_flat(rng, 800, 2, ambient=3)))
    t = rng.uniform(0, 2 * np.pi, 800)
    z = rng.uniform(0, 0.2, 800)
    cyl = np.c_[0.15 * np.cos(t), 0.15 * np.sin(t), z]  # tightly curved surface
    curved = manifold_graph_metrics(NNKGraph(k=15).fit(cyl))
    assert np.nanmedian(flat.orientation) < 0.1
    assert np.nanmedian(curved.orientation) > 2 * np.nanmedian(flat.orientation)
    assert (flat.orientation[np.isfinite(flat.orientation)] <= np.pi / 2 + 1e-6).all()


def test_summary(rng):
    m = manifold_graph_metrics(NNKGraph(k=10).fit(rng.standard_normal((150, 3))))
    s = summarize(m)
    assert set(s) == {"n_neighbors", "diameter", "local_dim", "orientation"}
    assert s["n_neighbors"]["mean"] == pytest.approx(m.n_neighbors.mean())
    assert sum(s["local_dim"]["hist"]["counts"]) == 150
    assert m.to_json()["dim_threshold"] == 0.1
    with pytest.raises(InputError, match="dim_threshold"):
        manifold_graph_metrics(NNKGraph(k=3).fit(rng.standard_normal((10, 2))), dim_threshold=0)


def test_wide_features_give_the_same_metrics_in_row_space_coordinates(rng, monkeypatch):
    from leafscope.nnk import metrics as mgm

    X = _flat(rng, 120, 3, ambient=400)  # D = 400 > N = 120: the QR shortcut is taken
    g = NNKGraph(k=12, kernel="cosine").fit(X)
    fast = manifold_graph_metrics(g)
    monkeypatch.setattr(mgm, "_row_space_coordinates", lambda Z: Z)
    slow = manifold_graph_metrics(g)
    np.testing.assert_array_equal(fast.n_neighbors, slow.n_neighbors)
    np.testing.assert_array_equal(fast.local_dim, slow.local_dim)
    np.testing.assert_allclose(fast.diameter, slow.diameter, atol=1e-6)
    np.testing.assert_allclose(fast.orientation, slow.orientation, atol=1e-3)
