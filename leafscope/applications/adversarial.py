"""Adversarial-example detection from the geometry of G, against LID and Mahalanobis baselines.

Scores (every one oriented "higher = more adversarial" only after tuning, see
:func:`tuned_auroc`):

* ``lambda1``: the largest eigenvalue of G(x) (Zhao et al. 2019 detect adversarial inputs by
  the eigenvalues of the input Fisher);
* ``trace``: ``tr G(x) = Σ p_i ‖∇ log p_i‖²``;
* ``turning``: how fast the top eigen-direction turns along itself,
  ``sin∠(v₁(x), v₁(x + h v₁(x))) / h`` — the bend that the two-step attack exploits (for
  piecewise-linear nets the pointwise curvatures of ``docs/geometry.md`` vanish inside linear
  regions, this finite turning does not);
* ``leaf_curvature``: the largest |principal curvature| of the kernel leaf along v₁
  (:func:`leafscope.geometry.leaf_principal_curvatures`; zero for ReLU nets);
* ``msp``: ``1 − max_i p_i`` (the baseline every geometric score must beat: attacked points
  stop just past a decision boundary, where the model is unsure, and λ₁ and the trace are
  largest where p is far from one-hot);
* ``lid_k``: local intrinsic dimensionality (Ma et al., ICLR 2018) of the penultimate features
  among those of a clean reference set, maximum-likelihood estimate with k neighbours,
  ``LID = −(1/k Σ_i log(r_i / r_k))⁻¹``;
* ``mahalanobis``: the smallest class-conditional Mahalanobis distance of the penultimate
  features (Lee et al., NeurIPS 2018; tied covariance fitted on the clean reference set,
  :class:`leafscope.applications.MahalanobisDetector`).

Protocol: clean points that the model classifies correctly are the negatives, successful
attacks (the prediction changed) the positives. A detector's free choices (its sign, and k for
LID) are tuned on the examples of *another* attack and the AUROC is measured on the evaluated
attack (:func:`tuned_auroc`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from leafscope.applications.metrics import auroc
from leafscope.errors import InputError
from leafscope.information import DataInformation, eval_mode

__all__ = [
    "DetectionScore",
    "lid_scores",
    "spectral_scores",
    "tuned_auroc",
]


def spectral_scores(
    model: nn.Module,
    x: Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    turning_step: float = 0.05,
    leaf_curvature: bool = False,
    lanczos_steps: int = 20,
) -> dict[str, np.ndarray]:
    """``msp``, ``lambda1``, ``trace``, ``turning`` (and with ``leaf_curvature`` the largest
    |principal curvature| along v₁) at the points ``x`` ``(N, *shape)``, float64 arrays."""
    if not turning_step > 0:
        raise InputError(f"turning_step must be > 0 (got {turning_step!r})")
    with eval_mode(model):
        info = DataInformation(model, x, dtype=dtype)
        values, vecs = info.eigh()
        v1 = vecs[:, 0]
        moved = x.detach().to(dtype) + turning_step * v1.reshape(x.shape)
        v1b = DataInformation(model, moved, dtype=dtype).eigh()[1][:, 0]
    cos = (v1 * v1b).sum(dim=1).abs().clamp(max=1.0)
    out = {
        "msp": (1.0 - info.probs.max(dim=1).values).double().cpu().numpy(),
        "lambda1": values[:, 0].double().cpu().numpy(),
        "trace": info.trace().double().cpu().numpy(),
        "turning": ((1 - cos**2).clamp_min(0).sqrt() / turning_step).double().cpu().numpy(),
    }
    if leaf_curvature:
        from leafscope.geometry import leaf_principal_curvatures

        pc = leaf_principal_curvatures(
            model, x, normals=1, count=1, steps=lanczos_steps, dtype=dtype
        )
        out["leaf_curvature"] = pc.values[:, 0, 0].abs().double().cpu().numpy()
    return out


def lid_scores(features: Tensor, reference: Tensor, ks: Sequence[int]) -> np.ndarray:
    """``(N, len(ks))`` maximum-likelihood LID of each row of ``features`` (N, F) among the rows
    of ``reference`` (M, F), with k nearest neighbours for each k in ``ks`` (k ≤ M); points at
    distance 0 (duplicates) are skipped."""
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 2 or max(ks) > reference.shape[0]:
        raise InputError(f"ks must lie in [2, {reference.shape[0]}] (got {ks})")
    d = torch.cdist(features.double(), reference.double())
    d = torch.where(d > 0, d, torch.inf)
    r = d.sort(dim=1).values[:, : max(ks)]
    out = np.zeros((features.shape[0], len(ks)))
    for j, k in enumerate(ks):
        rk = r[:, :k]
        ratio = torch.log(rk / rk[:, -1:]).mean(dim=1)
        out[:, j] = (-1.0 / ratio.clamp(max=-1e-12)).numpy()
    return out


@dataclass(frozen=True)
class DetectionScore:
    """AUROC of one detector on one evaluated attack, tuned on another.

    Attributes:
        detector: family name (e.g. ``lid``).
        variant: the variant chosen on the tuning attack (e.g. ``lid_20``).
        sign: +1 if "higher = adversarial" was chosen, −1 otherwise.
        tune_auroc: AUROC of the chosen variant and sign on the tuning attack.
        auroc: AUROC on the evaluated attack (positives: its successful examples).
    """

    detector: str
    variant: str
    sign: int
    tune_auroc: float
    auroc: float


def tuned_auroc(
    clean: Mapping[str, np.ndarray],
    tune: Mapping[str, np.ndarray],
    evaluate: Mapping[str, np.ndarray],
    families: Mapping[str, Sequence[str]],
) -> list[DetectionScore]:
    """Per detector family, the variant and sign with the best AUROC on ``tune`` (adversarial
    examples of the held-out attack) against ``clean``, then its AUROC on ``evaluate``.

    Args:
        clean: variant → scores of the clean (negative) points.
        tune: variant → scores of the tuning attack's successful examples.
        evaluate: variant → scores of the evaluated attack's successful examples.
        families: detector → its variants (keys of the three mappings).
    """
    out = []
    for family, variants in families.items():
        best = None
        for variant in variants:
            for sign in (1, -1):
                a = auroc(sign * np.asarray(tune[variant]), sign * np.asarray(clean[variant]))
                if best is None or a > best[0]:
                    best = (a, variant, sign)
        assert best is not None
        a_tune, variant, sign = best
        a_eval = auroc(sign * np.asarray(evaluate[variant]), sign * np.asarray(clean[variant]))
        out.append(DetectionScore(family, variant, sign, float(a_tune), float(a_eval)))
    return out
