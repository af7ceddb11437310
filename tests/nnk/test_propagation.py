"""Harmonic label propagation on NNK and kNN graphs."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits

from leafscope.errors import InputError
from leafscope.nnk.propagation import compare_propagation, harmonic_propagation


def test_harmonic_on_a_path():
    # path 0-1-2-3-4 with unit weights, ends labelled: harmonic = linear interpolation
    n = 5
    W = sp.diags([np.ones(n - 1), np.ones(n - 1)], [1, -1]).tocsr()
    labels = np.array([0, 0, 0, 0, 1])
    known = np.array([True, False, False, False, True])
    pred, F = harmonic_propagation(W, labels, known)
    np.testing.assert_allclose(F[:, 1], [0, 0.25, 0.5, 0.75, 1], atol=1e-6)
    np.testing.assert_array_equal(pred, [0, 0, 0, 1, 1])  # 0.5 tie goes to class 0
    with pytest.raises(InputError, match="labelled"):
        harmonic_propagation(W, labels, np.zeros(n, bool))


def test_nnk_beats_knn_on_digits():
    """sklearn's bundled 8x8 digits (no download): 3% labels, mean over 3 labelled subsets."""
    X, y = load_digits(return_X_y=True)
    res = [compare_propagation(X / 16, y, 0.03, k=30, seed=s) for s in range(3)]
    nnk = np.mean([r["nnk_error"] for r in res])
    knn = np.mean([r["knn_error"] for r in res])
    assert nnk < knn
    assert res[0]["nnk_edges"] < res[0]["knn_edges"]
