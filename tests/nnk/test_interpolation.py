"""NNK interpolation classifier: leave-one-out never uses the point itself."""

import numpy as np
import pytest

from leafscope.errors import NotFittedError
from leafscope.nnk.interpolation import NNKClassifier, nnk_vote


def test_loo_never_uses_itself_with_duplicates(rng):
    X = rng.standard_normal((50, 4))
    y = rng.integers(0, 3, 50)
    X[1] = X[0]
    y[0], y[1] = 0, 1  # duplicates with different labels
    clf = NNKClassifier(k=6, kernel="gaussian").fit(X, y)
    assert clf.loo_proba_[0].argmax() == 1 and clf.loo_proba_[1].argmax() == 0
    assert clf.loo_proba_[0, 1] == pytest.approx(1.0, abs=1e-6)
    # a point with a unique label and no duplicate can never vote for its own label
    X2 = rng.standard_normal((40, 3))
    y2 = np.zeros(40, int)
    y2[5] = 1
    clf2 = NNKClassifier(k=5, kernel="cosine").fit(X2, y2)
    assert clf2.loo_proba_[5, 1] == 0 and clf2.loo_error_ == pytest.approx(1 / 40)


def test_separated_clusters_and_prediction(rng):
    X = np.r_[rng.normal(0, 0.3, (60, 2)), rng.normal(5, 0.3, (60, 2))]
    y = np.r_[np.zeros(60, int), np.ones(60, int)] + 7
    clf = NNKClassifier(k=10, kernel="gaussian").fit(X, y)
    assert clf.loo_error_ == 0
    np.testing.assert_array_equal(clf.predict(np.array([[0.1, 0.0], [5.1, 4.9]])), [7, 8])
    with pytest.raises(NotFittedError):
        NNKClassifier().predict(X)


def test_vote_weights():
    p = nnk_vote(
        np.array([[0, 1, -1], [-1, -1, -1]]),
        np.array([[1.0, 3.0, 9.0], [0, 0, 0]]),
        np.array([0, 1]),
        2,
    )
    np.testing.assert_allclose(p, [[0.25, 0.75], [0.5, 0.5]])
