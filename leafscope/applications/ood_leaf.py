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
- :class:`LeafPixelDetector` — the leaf distance and the pixel distance to the nearest training
  image, each divided by its median over held-out training points (leave-one-out: no out data),
  blended with a weight ``w`` (``w = 0``: leaf distance, ``w = 1``: pixel-NN).

The slow detectors (the leaf paths, the spectra of G) take ``progress=True`` in ``fit`` and
``score_samples`` (and :meth:`LeafPixelDetector.components`): a tqdm bar per batch of points on
stderr, shown only once the work has lasted :data:`PROGRESS_DELAY` seconds and removed when done.
The scores do not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import Tensor, nn
from tqdm.auto import tqdm

from leafscope.applications.leaf import NearestImages, project_onto_leaf
from leafscope.applications.ood import OODDetector
from leafscope.dtypes import check_dtype
from leafscope.errors import InputError
from leafscope.information.spectrum import point_spectra

__all__ = [
    "DIMSpectrumDetector",
    "DIMTraceDetector",
    "LeafDistanceDetector",
    "LeafPixelDetector",
    "PixelNNDetector",
]

#: Seconds of work before a progress bar appears (short calls print nothing).
PROGRESS_DELAY = 2.0
#: Leaf paths run together (one batch of :func:`project_onto_leaf`, one step of the bar).
PATH_BATCH = 256


class _Progress(OODDetector):
    """``fit`` and ``score_samples`` with a ``progress`` keyword (the subclass's loops read
    ``self._progress`` during the call)."""

    _progress = False

    def fit(self, x: Tensor, y: Tensor | None = None, *, progress: bool = False) -> OODDetector:
        """Fit on in-distribution training inputs ``x`` (N, ...) and optional labels ``y`` (N,);
        ``progress``: a tqdm bar over the batches of points (stderr)."""
        with self._showing(progress):
            return super().fit(x, y)

    def score_samples(self, x: Tensor, *, progress: bool = False) -> np.ndarray:
        """``(N,)`` float64 scores, higher = more in-distribution; ``progress``: a tqdm bar over
        the batches of points (stderr)."""
        with self._showing(progress):
            return super().score_samples(x)

    @contextmanager
    def _showing(self, progress: bool) -> Iterator[None]:
        previous, self._progress = self._progress, bool(progress)
        try:
            yield
        finally:
            self._progress = previous


def _bar(total: int, desc: str, show: bool) -> tqdm:
    """A bar counting points, removed when done, shown after :data:`PROGRESS_DELAY` s."""
    return tqdm(
        total=total, desc=desc, unit="point", leave=False, delay=PROGRESS_DELAY, disable=not show
    )


def _spectrum_features(
    model: nn.Module, x: Tensor, dtype: torch.dtype, progress: bool = False
) -> np.ndarray:
    spec = point_spectra(model, x, dtype=dtype, progress=progress)
    return torch.cat([spec.log10_eigenvalues(), spec.log10_trace()[:, None]], dim=1).numpy()


class DIMTraceDetector(_Progress):
    """``−log10 tr G(x)`` (float64 by default; ``fit`` only records the call)."""

    name = "dim-trace"

    def __init__(self, model: nn.Module, *, dtype: torch.dtype = torch.float64, **kwargs):
        super().__init__(model, **kwargs)
        self.dtype = check_dtype(dtype)

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        pass

    def _score(self, x: Tensor) -> np.ndarray:
        spec = point_spectra(self.model, x, dtype=self.dtype, progress=self._progress)
        return -spec.log10_trace().numpy()


class DIMSpectrumDetector(_Progress):
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
        v = _spectrum_features(self.model, x, self.dtype, self._progress)
        if self.method == "mahalanobis":
            lw = LedoitWolf().fit(v)
            self.mean_, self.precision_ = lw.location_, lw.precision_
        else:
            self.index_ = faiss.IndexFlatL2(v.shape[1])
            self.index_.add(np.ascontiguousarray(v, dtype=np.float32))
            self.k_ = min(self.k, len(v))

    def _score(self, x: Tensor) -> np.ndarray:
        v = _spectrum_features(self.model, x, self.dtype, self._progress)
        if self.method == "mahalanobis":
            d = v - self.mean_
            return -np.sqrt(np.einsum("nf,fg,ng->n", d, self.precision_, d))
        d2, _ = self.index_.search(np.ascontiguousarray(v, dtype=np.float32), self.k_)
        return -np.sqrt(np.maximum(d2[:, -1].astype(np.float64), 0.0))


class PixelNNDetector(_Progress):
    """Minus the Euclidean pixel distance to the nearest training image."""

    name = "pixel-nn"

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        self.nearest_ = NearestImages(x)

    def _score(self, x: Tensor) -> np.ndarray:
        return -self.nearest_.search(x, 1)[0][:, 0].astype(np.float64)


class LeafDistanceDetector(_Progress):
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

    def _leaf_distance(self, x: Tensor, skip_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(d_leaf, d_pixel)`` (N,) of ``x``; ``skip_self``: x are reference points, whose
        own copy is not an anchor (leave-one-out). The paths run in batches of about
        :data:`PATH_BATCH` (whole points: the ``k`` paths of a point run together), one step
        of the progress bar each."""
        k = min(self.n_anchors, len(self.nearest_.reference) - int(skip_self))
        dist, idx = self.nearest_.search(x, k + int(skip_self))
        dist, idx = dist[:, int(skip_self) :], idx[:, int(skip_self) :]
        x = x.detach().float().cpu()
        per_batch = max(1, PATH_BATCH // k)
        d_leaf = np.empty(len(x), dtype=np.float64)
        what = "leaf scale" if skip_self else self.name
        with _bar(len(x), f"{what} paths", self._progress) as bar:
            for start in range(0, len(x), per_batch):
                rows = slice(start, start + per_batch)
                anchors = self.nearest_.reference[torch.as_tensor(idx[rows].reshape(-1))]
                targets = x[rows].repeat_interleave(k, dim=0)
                proj = project_onto_leaf(
                    self.model, anchors, targets, max_steps=self.max_steps, step=self.step,
                    dtype=self.dtype, batch_size=PATH_BATCH,
                )  # fmt: skip
                d_leaf[rows] = proj.final_distance.reshape(-1, k).min(axis=1)
                bar.update(len(targets) // k)
        return d_leaf, dist[:, 0].astype(np.float64)

    def _score(self, x: Tensor) -> np.ndarray:
        return -self._leaf_distance(x)[0]


class LeafPixelDetector(LeafDistanceDetector):
    """Leaf distance blended with the pixel distance, each on the scale of the training data.

    ``fit`` holds out ``n_scale_points`` random training points and measures, for each, its
    pixel distance to the nearest *other* training image and its leaf distance from there;
    ``s_leaf`` and ``s_pixel`` are their medians. The score is
    ``−[(1 − w) d_leaf / s_leaf + w d_pixel / s_pixel]``: no out-of-distribution data enter.
    :meth:`components` returns both distances, so several weights (or
    :class:`LeafDistanceDetector`'s and :class:`PixelNNDetector`'s scores, ``w = 0`` and
    ``w = 1`` up to scale) come from one set of paths.

    Args:
        weight: w in [0, 1] (default 0.5: equal weight after normalisation).
        n_scale_points: held-out training points for the two medians.
        n_anchors, max_steps, step, dtype: as in :class:`LeafDistanceDetector`.
    """

    name = "leaf-pixel"

    def __init__(
        self, model: nn.Module, *, weight: float = 0.5, n_scale_points: int = 200, **kwargs
    ):
        super().__init__(model, **kwargs)
        if not 0 <= weight <= 1:
            raise InputError(f"weight must be in [0, 1] (got {weight})")
        if isinstance(n_scale_points, bool) or not isinstance(n_scale_points, int):
            raise InputError(f"n_scale_points must be an integer >= 1 (got {n_scale_points!r})")
        if n_scale_points < 1:
            raise InputError(f"n_scale_points must be an integer >= 1 (got {n_scale_points!r})")
        self.weight, self.n_scale_points = float(weight), n_scale_points

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        if len(x) < 2:
            raise InputError(f"{self.name} needs at least 2 training points (got {len(x)})")
        super()._fit(x, y)
        rng = np.random.default_rng(self.random_state)
        held = rng.choice(len(x), min(self.n_scale_points, len(x)), replace=False)
        d_leaf, d_pixel = self._leaf_distance(x[torch.as_tensor(np.sort(held))], skip_self=True)
        self.scale_leaf_ = max(float(np.median(d_leaf)), 1e-12)
        self.scale_pixel_ = max(float(np.median(d_pixel)), 1e-12)

    def components(self, x: Tensor, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(d_leaf, d_pixel)``: (N,) float64 leaf and pixel distances of inputs x (N, ...);
        ``progress``: a tqdm bar over the batches of points (stderr)."""
        if not self.fitted_:
            self.score_samples(x)  # raises NotFittedError
        with self._showing(progress):
            return self._leaf_distance(torch.as_tensor(x))

    def combine(self, d_leaf: np.ndarray, d_pixel: np.ndarray, weight: float | None = None):
        """The score from :meth:`components` with ``weight`` (default ``self.weight``)."""
        w = self.weight if weight is None else float(weight)
        return -((1 - w) * d_leaf / self.scale_leaf_ + w * d_pixel / self.scale_pixel_)

    def _score(self, x: Tensor) -> np.ndarray:
        return self.combine(*self._leaf_distance(x))
