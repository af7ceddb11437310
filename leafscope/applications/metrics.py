"""Scores used by the applications: PSNR, AUROC, FPR at 95% TPR, AUPR-in and AUPR-out."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from leafscope.errors import InputError

__all__ = ["aupr_in", "aupr_out", "auroc", "fpr_at_tpr", "psnr", "roc_points"]


def psnr(reference: np.ndarray, estimate: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per image, ``10 log10(range² / MSE)`` in dB
    (:func:`skimage.metrics.peak_signal_noise_ratio` with ``data_range`` given explicitly).

    Args:
        reference: clean images ``(N, ...)``.
        estimate: images of the same shape.
        data_range: peak value (1 for images in [0, 1]).

    Returns:
        ``(N,)`` float64 PSNR in dB (``inf`` where the images are equal).
    """
    ref, est = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    if ref.shape != est.shape or ref.ndim < 2:
        raise InputError(
            f"psnr needs two batches (N, ...) of equal shape (got {ref.shape} and {est.shape})"
        )
    if not data_range > 0:
        raise InputError(f"data_range must be > 0 (got {data_range})")
    with np.errstate(divide="ignore"):
        values = [
            peak_signal_noise_ratio(r, e, data_range=data_range)
            for r, e in zip(ref, est, strict=True)
        ]
    return np.array(values, dtype=np.float64)


def _labels_scores(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(in_scores, np.float64).ravel(), np.asarray(out_scores, np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise InputError(f"need in and out scores (got {len(a)} and {len(b)})")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("scores contain NaN or inf: check the detector's inputs")
    return np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b]


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve with in-distribution as the positive class (higher score = in)."""
    labels, scores = _labels_scores(in_scores, out_scores)
    return float(roc_auc_score(labels, scores))


def aupr_in(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the precision-recall curve with in-distribution as the positive class
    (average precision, :func:`sklearn.metrics.average_precision_score`; higher score = in).
    Chance level is the share of in-distribution points."""
    labels, scores = _labels_scores(in_scores, out_scores)
    return float(average_precision_score(labels, scores))


def aupr_out(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the precision-recall curve with out-of-distribution as the positive class
    (scores negated, so lower score = out). Chance level is the share of out points."""
    labels, scores = _labels_scores(in_scores, out_scores)
    return float(average_precision_score(1.0 - labels, -scores))


def roc_points(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve with in-distribution as the positive class (higher score = in).

    Returns:
        ``(fpr, tpr)``: float64 arrays of the false and true positive rates at each threshold,
        from (0, 0) to (1, 1).
    """
    labels, scores = _labels_scores(in_scores, out_scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Fraction of out-of-distribution points accepted when ``tpr`` of the in-distribution points
    are accepted (FPR@95TPR for ``tpr=0.95``); lower is better."""
    if not 0 < tpr <= 1:
        raise InputError(f"tpr must be in (0, 1] (got {tpr})")
    labels, scores = _labels_scores(in_scores, out_scores)
    fpr, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(fpr[np.searchsorted(tprs, tpr - 1e-12, side="left")])
