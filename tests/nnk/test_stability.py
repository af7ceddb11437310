"""Geometric stability: edge overlap and MGM distances, with known answers."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.nnk.graph import NNKGraph
from leafscope.nnk.metrics import ManifoldGraphMetrics, manifold_graph_metrics
from leafscope.nnk.stability import (
    edge_overlap,
    geometric_stability,
    knn_adjacency,
    mgm_distances,
)
from leafscope.testing import tiny_mlp


def _adj(n, edges):
    r, c = zip(*edges, strict=True)
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))


def test_edge_overlap_hand_values():
    a = _adj(5, [(0, 1), (1, 2), (2, 3)])
    b = _adj(5, [(1, 0), (3, 2), (3, 4), (0, 4)])  # direction does not matter
    o = edge_overlap(a, b)
    assert (o.common, o.edges_a, o.edges_b) == (2, 3, 4)
    assert o.jaccard == pytest.approx(2 / 5)
    assert (o.a_in_b, o.b_in_a) == (pytest.approx(2 / 3), pytest.approx(2 / 4))
    assert edge_overlap(a, a).jaccard == 1.0


def test_chance_matches_random_graphs(rng):
    n, ma, mb = 60, 150, 250
    pairs = np.array(np.triu_indices(n, 1)).T
    draws = []
    for _ in range(300):
        ea = pairs[rng.choice(len(pairs), ma, replace=False)]
        eb = pairs[rng.choice(len(pairs), mb, replace=False)]
        o = edge_overlap(_adj(n, ea.tolist()), _adj(n, eb.tolist()))
        draws.append(o.jaccard)
    assert np.mean(draws) == pytest.approx(o.chance, rel=0.1)


def test_knn_adjacency_is_the_symmetrised_knn_graph(rng):
    g = NNKGraph(k=4).fit(rng.standard_normal((30, 3)))
    A = knn_adjacency(g).toarray()
    assert (A == A.T).all() and np.diag(A).sum() == 0
    for i, row in enumerate(g.knn_indices_):
        assert A[i, row].all()
    # every NNK edge is a kNN edge
    W = g.weights_.toarray() > 0
    assert not (W & (A == 0)).any()


def test_mgm_distances_of_a_shifted_distribution():
    base = np.linspace(0, 1, 101)

    def metrics(shift):
        return ManifoldGraphMetrics(
            n_neighbors=np.full(101, 4.0),
            diameter=base + shift,
            local_dim=np.full(101, 2.0),
            orientation=np.full(101, np.nan),
        )

    d = mgm_distances(metrics(0.0), metrics(0.255))
    assert d["diameter"]["wasserstein"] == pytest.approx(0.255)
    assert d["diameter"]["ks"] == pytest.approx(26 / 101, abs=1e-12)  # at x = 0.25
    assert d["n_neighbors"] == {"wasserstein": 0.0, "ks": 0.0}
    assert "orientation" not in d  # all NaN: not compared


def _permuted(model: nn.Sequential, perm: torch.Tensor) -> nn.Sequential:
    """The same function with the first hidden layer's units permuted."""
    import copy

    other = copy.deepcopy(model)
    with torch.no_grad():
        other[1].weight.copy_(model[1].weight[perm])
        other[1].bias.copy_(model[1].bias[perm])
        other[3].weight.copy_(model[3].weight[:, perm])
    return other


def test_permuted_hidden_units_give_identical_geometry():
    model = tiny_mlp(n_in=6, hidden=16, seed=0)
    other = _permuted(model, torch.randperm(16, generator=torch.Generator().manual_seed(1)))
    x = torch.rand(300, 6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model(x), other(x))
    res = geometric_stability([model, other], x, ["2"], k=12)["2"]
    assert res.nnk_overlap[0].jaccard == 1.0 and res.knn_overlap[0].jaccard == 1.0
    for d in res.mgm_distances[0].values():
        assert d["wasserstein"] < 1e-5


def test_different_seeds_overlap_partly_but_far_above_chance():
    x = torch.rand(400, 6, generator=torch.Generator().manual_seed(3))
    models = [tiny_mlp(n_in=6, hidden=16, seed=s) for s in range(3)]
    res = geometric_stability(models, x, ["2", "4"], k=12)
    for layer in res.values():
        assert layer.pairs == [(0, 1), (0, 2), (1, 2)]
        s = layer.summary()
        assert 10 * s["nnk_chance"] < s["nnk_jaccard"] < 1.0
        # NNK edges are a subset of kNN edges, selected per run: never more edges than kNN
        pairs = zip(layer.nnk_overlap, layer.knn_overlap, strict=True)
        assert all(o.edges_a <= k.edges_a for o, k in pairs)


def test_metrics_of_each_model_are_the_library_metrics():
    x = torch.rand(100, 6, generator=torch.Generator().manual_seed(4))
    model = tiny_mlp(n_in=6, hidden=16, seed=0)
    res = geometric_stability([model, model], x, ["2"], k=10)["2"]
    feats = model[2](model[1](model[0](x))).detach()
    m = manifold_graph_metrics(NNKGraph(k=10, kernel="cosine").fit(feats), orientation=False)
    assert res.mgm_means[0]["n_neighbors"] == pytest.approx(m.n_neighbors.mean())


def test_bad_input():
    m = tiny_mlp(n_in=6)
    with pytest.raises(InputError, match="at least 2"):
        geometric_stability([m], torch.rand(10, 6), ["2"])
    with pytest.raises(InputError, match="nodes"):
        edge_overlap(_adj(3, [(0, 1)]), _adj(4, [(0, 1)]))
    with pytest.raises(InputError, match="square"):
        edge_overlap(sp.csr_matrix(np.ones((2, 3))), _adj(2, [(0, 1)]))
