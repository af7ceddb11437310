"""OOD detectors from the information matrix and the data leaf.

- :class:`DIMTraceDetector` — ``−log10 tr G(x)``: the model's training data sits where G is
  small (theory §3: MNIST has the lowest trace under an MNIST model).
- :class:`DIMSpectrumDetector` — the vector ``(log10 λ_1..λ_{C-1}, log10 tr G)``; a Gaussian
  (Ledoit-Wolf covariance) fitted on training points, score = minus the Mahalanobis distance;
  or ``method="knn"``: minus the distance to the k-th nearest training vector.
- :class:`PixelNNDetector` — minus the pixel distance to the nearest training image (the
  starting point of the leaf detector's paths: the control that shows what the path adds).
- :class:`LeafDistanceDetector` — minus the distance from the input to the closest point that a
  horizontal path from its nearest training images reaches on their leaf
  (:func:`project_onto_leaf`, capped at ``max_steps``).
"""

from __future__ import annotations

import faiss
import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import Tensor, nn

from leafscope.applications.leaf import NearestImages, project_onto_leaf
from leafscope.applications.ood import OODDetector
from leafscope.dtypes import check_dtype
from leafscope.errors import InputError
from leafscope.information.spectrum import point_spectra

__all__ = ["DIMSpectrumDetector", "DIMTraceDetector", "LeafDistanceDetector", "PixelNNDetector"]


def _spectrum_features(model: nn.Module, x: Tensor, dtype: torch.dtype) -> np.ndarray:
    spec = point_spectra(model, x, dtype=dtype)
    return torch.cat([spec.log10_eigenvalues(), spec.log10_trace()[:, None]], dim=1).numpy()


class DIMTraceDetector(OODDetector):
    """``−log10 tr G(x)`` (float64 by default; ``fit`` only records the call)."""

    name = "dim-trace"

    def __init__(self, model: nn.Module, *, dtype: torch.dtype = torch.float64, **kwargs):
        super().__init__(model, **kwargs)
        self.dtype = check_dtype(dtype)

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        pass

    def _score(self, x: Tensor) -> np.ndarray:
        return -point_spectra(self.model, x, dtype=self.dtype).log10_trace().numpy()


class DIMSpectrumDetector(OODDetector):
    """Density of the log-spectrum of G at training points.

    Args:
        method: ``"mahalanobis"`` (Gaussian, Ledoit-Wolf covariance) or ``"knn"``.
        k: neighbour rank for ``knn``.
        dtype: spectrum dtype.
    """

    name = "dim-spectrum"

    def __init__(
        self,
        model: nn.Module,
        *,
        method: str = "mahalanobis",
        k: int = 10,
        dtype: torch.dtype = torch.float64,
        **kwargs,
    ):
        kwargs.setdefault("max_fit_points", 1000)
        super().__init__(model, **kwargs)
        if method not in ("mahalanobis", "knn"):
            raise InputError(f"unknown method {method!r}: use 'mahalanobis' or 'knn'")
        self.method, self.k, self.dtype = method, k, check_dtype(dtype)

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        v = _spectrum_features(self.model, x, self.dtype)
        if self.method == "mahalanobis":
            lw = LedoitWolf().fit(v)
            self.mean_, self.precision_ = lw.location_, lw.precision_
        else:
            self.index_ = faiss.IndexFlatL2(v.shape[1])
            self.index_.add(np.ascontiguousarray(v, dtype=np.float32))
            self.k_ = min(self.k, len(v))

    def _score(self, x: Tensor) -> np.ndarray:
        v = _spectrum_features(self.model, x, self.dtype)
        if self.method == "mahalanobis":
            d = v - self.mean_
            return -np.sqrt(np.einsum("nf,fg,ng->n", d, self.precision_, d))
        d2, _ = self.index_.search(np.ascontiguousarray(v, dtype=np.float32), self.k_)
        return -np.sqrt(np.maximum(d2[:, -1].astype(np.float64), 0.0))


class PixelNNDetector(OODDetector):
    """Minus the Euclidean pixel distance to the nearest training image."""

    name = "pixel-nn"

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        self.nearest_ = NearestImages(x)

    def _score(self, x: Tensor) -> np.ndarray:
        return -self.nearest_.search(x, 1)[0][:, 0].astype(np.float64)


class LeafDistanceDetector(OODDetector):
    """Minus the distance from x to the data leaf, reached by horizontal paths.

    For each input, paths start at its ``n_anchors`` nearest training images (pixel distance)
    and move along their leaves toward it (adaptive step ≤ ``step``, at most ``max_steps``
    steps, pixel box [0, 1]); the score is minus the smallest final distance. Cost: about
    ``n_anchors · max_steps`` evaluations of G per input.

    Args:
        n_anchors: paths per input.
        max_steps: steps per path.
        step: largest step length.
        dtype: ``torch.float32`` (default) or ``torch.float64`` for the paths.
    """

    name = "leaf-distance"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_anchors: int = 1,
        max_steps: int = 20,
        step: float = 0.1,
        dtype: torch.dtype = torch.float32,
        **kwargs,
    ):
        super().__init__(model, **kwargs)
        for value, what in ((n_anchors, "n_anchors"), (max_steps, "max_steps")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{what} must be an integer >= 1 (got {value!r})")
        self.n_anchors, self.max_steps, self.step = n_anchors, max_steps, step
        self.dtype = check_dtype(dtype)

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        self.nearest_ = NearestImages(x)

    def _score(self, x: Tensor) -> np.ndarray:
        k = min(self.n_anchors, len(self.nearest_.reference))
        _, idx = self.nearest_.search(x, k)
        anchors = self.nearest_.reference[torch.as_tensor(idx.reshape(-1))]
        targets = x.detach().float().cpu().repeat_interleave(k, dim=0)
        proj = project_onto_leaf(
            self.model, anchors, targets, max_steps=self.max_steps, step=self.step, dtype=self.dtype
        )
        return -proj.final_distance.reshape(len(x), k).min(axis=1)
