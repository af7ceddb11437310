"""Out-of-distribution detection: the detector contract, the evaluation, seed aggregation.

Every detector follows the scikit-learn convention: parameters in the constructor,
``fit(x_train, y=None) -> self``, ``score_samples(x) -> (N,)`` with **higher = more
in-distribution**, :class:`NotFittedError` before ``fit``, ``random_state`` for every random
choice (subsampling). Detectors: :mod:`ood_baselines` (MSP, MaxLogit, energy, ReAct, ViM,
Mahalanobis, kNN) and :mod:`ood_leaf` (DIM trace, DIM spectrum, pixel nearest neighbour, distance
to the data leaf, leaf distance combined with pixel distance).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from leafscope.applications.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr
from leafscope.errors import InputError, NotFittedError
from leafscope.information import check_inputs

__all__ = [
    "METRICS",
    "OODDetector",
    "OODResult",
    "aggregate_seeds",
    "evaluate_detectors",
    "fit_detectors",
    "score_result",
    "takes_progress",
]

#: The metrics of every :class:`OODResult` (FPR95: lower is better; the others higher).
METRICS = ("auroc", "fpr95", "aupr_in", "aupr_out")


class OODDetector(ABC):
    """Abstract base class: subclasses implement ``_fit(x, y)`` and ``_score(x) -> np.ndarray``
    (instantiating a class that lacks either raises ``TypeError``).

    Args:
        model: the trained classifier (read only; evaluated in eval mode).
        max_fit_points: use at most this many training points in ``fit`` (random subset drawn
            with ``random_state``); None uses all.
        random_state: seed of every random choice.
    """

    name = "base"

    def __init__(
        self, model: nn.Module, *, max_fit_points: int | None = None, random_state: int | None = 0
    ):
        if max_fit_points is not None and max_fit_points < 1:
            raise InputError(f"max_fit_points must be >= 1 or None (got {max_fit_points})")
        self.model = model
        self.max_fit_points = max_fit_points
        self.random_state = random_state
        self.fitted_ = False

    def fit(self, x: Tensor, y: Tensor | None = None) -> OODDetector:
        """Fit on in-distribution training inputs ``x`` (N, ...) and optional labels ``y`` (N,)."""
        x = torch.as_tensor(x)
        check_inputs(x, "training inputs")
        if y is not None:
            y = torch.as_tensor(y)
            if y.shape != (x.shape[0],):
                raise InputError(
                    f"y must have shape ({x.shape[0]},) to match x (got {tuple(y.shape)})"
                )
        if self.max_fit_points is not None and x.shape[0] > self.max_fit_points:
            rng = np.random.default_rng(self.random_state)
            keep = torch.as_tensor(np.sort(rng.choice(x.shape[0], self.max_fit_points, False)))
            x, y = x[keep], (y[keep] if y is not None else None)
        self._fit(x, y)
        self.n_fit_points_ = int(x.shape[0])
        self.fitted_ = True
        return self

    def score_samples(self, x: Tensor) -> np.ndarray:
        """``(N,)`` float64 scores, higher = more in-distribution."""
        if not self.fitted_:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(x_train) before "
                "score_samples"
            )
        x = torch.as_tensor(x)
        check_inputs(x, "inputs")
        scores = np.asarray(self._score(x), dtype=np.float64).reshape(-1)
        if scores.shape != (x.shape[0],):
            raise RuntimeError(f"{self.name} returned {scores.shape} scores for {x.shape[0]}")
        return scores

    @abstractmethod
    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        """Estimate the detector's state from training inputs ``x`` (N, ...) and labels ``y``."""

    @abstractmethod
    def _score(self, x: Tensor) -> np.ndarray:
        """``(N,)`` scores of inputs ``x`` (N, ...), higher = more in-distribution."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(random_state={self.random_state})"


@dataclass
class OODResult:
    """AUROC, FPR@95TPR, AUPR-in and AUPR-out of one detector on one in/out pair (in = positive
    class for all but AUPR-out)."""

    detector: str
    out_dataset: str
    auroc: float
    fpr95: float
    seed: int | None = None
    aupr_in: float = float("nan")
    aupr_out: float = float("nan")
    in_scores: list[float] = field(default_factory=list, repr=False)
    out_scores: list[float] = field(default_factory=list, repr=False)

    def to_json(self, include_scores: bool = False) -> dict:
        out = asdict(self)
        if not include_scores:
            out.pop("in_scores")
            out.pop("out_scores")
        return out


def score_result(
    detector: str,
    out_dataset: str,
    s_in: np.ndarray,
    s_out: np.ndarray,
    seed: int | None = None,
    keep_scores: bool = True,
) -> OODResult:
    """Every metric of in-scores ``s_in`` (N_in,) against out-scores ``s_out`` (N_out,)."""
    return OODResult(
        detector=detector,
        out_dataset=out_dataset,
        auroc=auroc(s_in, s_out),
        fpr95=fpr_at_tpr(s_in, s_out, 0.95),
        seed=seed,
        aupr_in=aupr_in(s_in, s_out),
        aupr_out=aupr_out(s_in, s_out),
        in_scores=np.asarray(s_in).tolist() if keep_scores else [],
        out_scores=np.asarray(s_out).tolist() if keep_scores else [],
    )


def takes_progress(method: Callable) -> bool:
    """Whether a detector method (``fit``, ``score_samples``, ``components``) takes a
    ``progress`` keyword (the slow detectors show a bar over their batches of points)."""
    try:
        return "progress" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _with_progress(method: Callable, progress: bool) -> dict:
    return {"progress": progress} if progress and takes_progress(method) else {}


def fit_detectors(
    detectors: dict[str, OODDetector],
    x: Tensor,
    y: Tensor | None = None,
    *,
    progress: bool = False,
) -> dict[str, OODDetector]:
    """Fit every detector on in-distribution training inputs ``x`` (N, ...) and labels ``y``
    (or None); ``progress``: a bar for the slow ones. Returns ``detectors``."""
    for det in detectors.values():
        det.fit(x, y, **_with_progress(det.fit, progress))
    return detectors


def evaluate_detectors(
    detectors: dict[str, OODDetector],
    x_in: Tensor,
    outs: dict[str, Tensor],
    *,
    seed: int | None = None,
    keep_scores: bool = True,
    progress: bool = False,
) -> list[OODResult]:
    """Score fitted detectors on in-distribution test points and each out set.

    Args:
        detectors: name → fitted detector.
        x_in: ``(N_in, ...)`` in-distribution test inputs.
        outs: out-set name → ``(N_out, ...)`` inputs.
        seed: recorded with the results (training seed of the model).
        keep_scores: keep the raw scores (for ROC figures).
        progress: a progress bar for the slow detectors (those whose ``score_samples`` takes
            one).

    Returns:
        One :class:`OODResult` per (detector, out set).
    """
    results = []
    for name, det in detectors.items():
        shown = _with_progress(det.score_samples, progress)
        s_in = det.score_samples(x_in, **shown)
        for out_name, x_out in outs.items():
            s_out = det.score_samples(x_out, **shown)
            results.append(score_result(name, out_name, s_in, s_out, seed, keep_scores))
    return results


def aggregate_seeds(results: list[OODResult]) -> list[dict]:
    """Mean and standard deviation (ddof=0 over seeds) per (detector, out set), in input order.

    Returns:
        dicts ``detector, out_dataset``, then ``M`` and ``M_std`` for each metric ``M`` in
        ``auroc, fpr95, aupr_in, aupr_out``, then ``n_seeds, seeds``.
    """
    groups: dict[tuple[str, str], list[OODResult]] = {}
    for r in results:
        groups.setdefault((r.detector, r.out_dataset), []).append(r)
    table = []
    for (det, out), rs in groups.items():
        row: dict = {"detector": det, "out_dataset": out}
        for metric in METRICS:
            values = np.array([getattr(r, metric) for r in rs], dtype=np.float64)
            row[metric], row[f"{metric}_std"] = float(values.mean()), float(values.std())
        row.update(n_seeds=len(rs), seeds=[r.seed for r in rs])
        table.append(row)
    return table
