"""NNK interpolation classifier (DeepNNK) and its leave-one-out error.

The label distribution of a point is the vote of its NNK neighbours weighted by ``θ_j / Σθ``.
On the fitted points this is a leave-one-out estimate by construction: a node's own NNK solve
excludes the node by index (its duplicates, being other points, may vote).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from leafscope.errors import InputError, NotFittedError
from leafscope.nnk.graph import NNKGraph

__all__ = ["NNKClassifier", "nnk_vote"]


def nnk_vote(
    indices: np.ndarray, weights: np.ndarray, labels: np.ndarray, n_classes: int
) -> np.ndarray:
    """Class probabilities from weighted neighbour votes.

    Args:
        indices: (M, k) neighbour indices (-1 = none). weights: (M, k) non-negative weights.
        labels: (N,) integer labels of the indexed points, in [0, n_classes).
        n_classes: number of classes.

    Returns:
        (M, n_classes) probabilities; rows whose weights are all 0 vote for their first listed
        neighbour (uniform if there is none).
    """
    idx = np.asarray(indices)
    w = np.where(idx >= 0, np.asarray(weights, dtype=np.float64), 0.0)
    lab = np.where(idx >= 0, labels[np.clip(idx, 0, None)], 0)
    proba = np.zeros((idx.shape[0], n_classes))
    np.add.at(
        proba, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), lab.reshape(-1)), w.reshape(-1)
    )
    total = proba.sum(1, keepdims=True)
    empty = total[:, 0] <= 0
    if empty.any():
        first = idx[empty, 0]
        fill = np.full((int(empty.sum()), n_classes), 1.0 / n_classes)
        has = first >= 0
        fill[has] = np.eye(n_classes)[labels[first[has]]]
        proba[empty] = fill
        total[empty] = 1.0
    return proba / total


class NNKClassifier:
    """NNK interpolation classifier.

    Args:
        k: kNN candidates per point. kernel / sigma / symmetrize / ...: passed to
            :class:`NNKGraph` (``kernel="cosine"`` is the DeepNNK choice for deep features).

    Attributes:
        graph_: (learned by ``fit``, like all below) the fitted :class:`NNKGraph`.
        classes_: sorted class labels.
        loo_proba_: (N, C) leave-one-out class probabilities of the fitted points.
        loo_error_: leave-one-out error rate.
    """

    def __init__(
        self, k: int = 50, kernel: str = "cosine", sigma: float | None = None, **graph_kwargs: Any
    ):
        self.k = k
        self.kernel = kernel
        self.sigma = sigma
        self.graph_kwargs = graph_kwargs

    def fit(self, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> NNKClassifier:
        """Fit the graph on ``X`` (N, D) with labels ``y`` (N,); computes the LOO error."""
        y = np.asarray(y.cpu() if torch.is_tensor(y) else y)
        if y.ndim != 1:
            raise InputError(f"y must be a 1-D array of labels, got shape {y.shape}")
        self.classes_, self._y = np.unique(y, return_inverse=True)
        self.graph_ = NNKGraph(k=self.k, kernel=self.kernel, sigma=self.sigma, **self.graph_kwargs)
        n = (X.shape[0]) if hasattr(X, "shape") else len(X)
        if n != y.shape[0]:
            raise InputError(
                f"X has {n} rows but y has {y.shape[0]} labels: give one label per row"
            )
        self.graph_.fit(X)
        g = self.graph_
        self.loo_proba_ = nnk_vote(g.knn_indices_, g.theta_, self._y, len(self.classes_))
        self.loo_error_ = float(np.mean(self.loo_proba_.argmax(1) != self._y))
        return self

    def predict_proba(self, X_new: np.ndarray | torch.Tensor) -> np.ndarray:
        """(M, C) class probabilities of new points from their NNK neighbours among the fitted."""
        if not hasattr(self, "graph_"):
            raise NotFittedError("this NNKClassifier is not fitted yet: call fit(X, y) first")
        idx, w = self.graph_.query(X_new)
        return nnk_vote(idx, w, self._y, len(self.classes_))

    def predict(self, X_new: np.ndarray | torch.Tensor) -> np.ndarray:
        """(M,) predicted labels."""
        proba = self.predict_proba(X_new)
        return self.classes_[proba.argmax(1)]
