"""Standard OOD baselines on the classifier's outputs and penultimate features.

- :class:`MSPDetector` — maximum softmax probability (Hendrycks & Gimpel 2017).
- :class:`MaxLogitDetector` — the largest logit (Hendrycks et al. 2022).
- :class:`EnergyDetector` — ``T·logsumexp(s/T)`` (Liu et al. 2020).
- :class:`ReActDetector` — energy after clipping the penultimate activations at a percentile
  of the training activations (Sun et al. 2021).
- :class:`ViMDetector` — virtual-logit matching: energy minus ``α‖x^{P⊥}‖``, the norm of the
  feature's residual off the principal space (Wang et al. 2022).
- :class:`MahalanobisDetector` — class-conditional Gaussians with a shared covariance on the
  penultimate features, score ``max_c −(f − μ_c)ᵀ Σ⁻¹ (f − μ_c)`` (Lee et al. 2018, no input
  preprocessing, last layer only); optional covariance shrinkage (Ledoit-Wolf, OAS, fixed).
- :class:`KNNDetector` — minus the distance to the k-th nearest L2-normalised training feature
  (Sun et al. 2022; k = 50 as in the paper), exact search with faiss.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch
from scipy.linalg import pinvh
from sklearn.covariance import OAS, LedoitWolf, ShrunkCovariance, empirical_covariance
from torch import Tensor, nn

from leafscope.applications.ood import OODDetector
from leafscope.errors import InputError
from leafscope.models.features import head_of, penultimate_features

__all__ = [
    "EnergyDetector",
    "KNNDetector",
    "MSPDetector",
    "MahalanobisDetector",
    "MaxLogitDetector",
    "ReActDetector",
    "ViMDetector",
    "vim_principal_dim",
]

_SHRINKERS = {"ledoit-wolf": LedoitWolf, "oas": OAS}


class MSPDetector(OODDetector):
    """Maximum softmax probability (needs no training data; ``fit`` only records the call)."""

    name = "msp"

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        pass

    def _score(self, x: Tensor) -> np.ndarray:
        probs = torch.softmax(penultimate_features(self.model, x).logits.double(), dim=1)
        return probs.max(dim=1).values.numpy()


class MaxLogitDetector(OODDetector):
    """The largest logit (needs no training data; ``fit`` only records the call)."""

    name = "maxlogit"

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        pass

    def _score(self, x: Tensor) -> np.ndarray:
        return penultimate_features(self.model, x).logits.double().max(dim=1).values.numpy()


class EnergyDetector(OODDetector):
    """Negative free energy ``T·logsumexp(logits/T)``.

    Args:
        temperature: T > 0 (default 1).
    """

    name = "energy"

    def __init__(self, model: nn.Module, *, temperature: float = 1.0, **kwargs):
        super().__init__(model, **kwargs)
        if not temperature > 0:
            raise InputError(f"temperature must be > 0 (got {temperature})")
        self.temperature = temperature

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        pass

    def _score(self, x: Tensor) -> np.ndarray:
        t = self.temperature
        logits = penultimate_features(self.model, x).logits.double()
        return (t * torch.logsumexp(logits / t, dim=1)).numpy()


class MahalanobisDetector(OODDetector):
    """Class-conditional Gaussians with one shared (tied) covariance on the penultimate features.

    ``fit(x, y)`` uses the labels ``y``; without them the model's predictions. The shared
    covariance of the class-centred features is estimated with :mod:`sklearn.covariance`:

    - ``shrinkage=None`` (default, Lee et al. 2018): the empirical covariance plus a ridge
      ``ridge · tr(Σ)/F · I``; the precision is its pseudo-inverse (dead features stay finite);
    - ``shrinkage="ledoit-wolf"`` or ``"oas"``: the Ledoit-Wolf or OAS estimate, whose shrinkage
      toward ``tr(Σ)/F · I`` is chosen from the data (better when features outnumber points);
    - ``shrinkage=s`` with ``0 ≤ s ≤ 1``: the fixed blend ``(1 − s) Σ + s · tr(Σ)/F · I``.

    Args:
        ridge: relative ridge of the empirical covariance (used only with ``shrinkage=None``).
        shrinkage: None, ``"ledoit-wolf"``, ``"oas"`` or a number in [0, 1].
    """

    name = "mahalanobis"

    def __init__(
        self,
        model: nn.Module,
        *,
        ridge: float = 1e-6,
        shrinkage: str | float | None = None,
        **kwargs,
    ):
        super().__init__(model, **kwargs)
        if not (isinstance(ridge, (int, float)) and ridge >= 0):
            raise InputError(f"ridge must be a number >= 0 (got {ridge!r})")
        named = isinstance(shrinkage, str) and shrinkage in _SHRINKERS
        number = isinstance(shrinkage, (int, float)) and not isinstance(shrinkage, bool)
        if not (shrinkage is None or named or (number and 0 <= shrinkage <= 1)):
            raise InputError(
                f"shrinkage must be None, 'ledoit-wolf', 'oas' or a number in [0, 1] "
                f"(got {shrinkage!r})"
            )
        self.ridge, self.shrinkage = ridge, shrinkage

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        out = penultimate_features(self.model, x)
        f = out.features.double().numpy()
        labels = (y if y is not None else out.logits.argmax(dim=1)).numpy()
        classes = np.unique(labels)
        means = np.stack([f[labels == c].mean(axis=0) for c in classes])
        centred = f - means[np.searchsorted(classes, labels)]
        self.classes_, self.means_ = classes, means
        if self.shrinkage is None:
            cov = empirical_covariance(centred, assume_centered=True)
            cov += self.ridge * max(np.trace(cov) / len(cov), 1e-12) * np.eye(len(cov))
            self.covariance_, self.precision_ = cov, pinvh(cov)
            return
        if isinstance(self.shrinkage, str):
            estimator = _SHRINKERS[self.shrinkage](assume_centered=True)
        else:
            estimator = ShrunkCovariance(shrinkage=float(self.shrinkage), assume_centered=True)
        estimator.fit(centred)
        self.covariance_, self.precision_ = estimator.covariance_, estimator.precision_

    def _score(self, x: Tensor) -> np.ndarray:
        f = penultimate_features(self.model, x).features.double().numpy()
        d = f[:, None, :] - self.means_[None, :, :]
        m = np.einsum("ncf,fg,ncg->nc", d, self.precision_, d)
        return -m.min(axis=1)


class KNNDetector(OODDetector):
    """Minus the Euclidean distance to the k-th nearest normalised training feature.

    Args:
        k: neighbour rank (default 50, Sun et al. 2022; capped at the number of training points).
    """

    name = "knn"

    def __init__(self, model: nn.Module, *, k: int = 50, **kwargs):
        super().__init__(model, **kwargs)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be an integer >= 1 (got {k!r})")
        self.k = k

    @staticmethod
    def _normalised(f: Tensor) -> np.ndarray:
        f = f.double()
        f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return np.ascontiguousarray(f.numpy(), dtype=np.float32)

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        f = self._normalised(penultimate_features(self.model, x).features)
        self.index_ = faiss.IndexFlatL2(f.shape[1])
        self.index_.add(f)
        self.k_ = min(self.k, len(f))

    def _score(self, x: Tensor) -> np.ndarray:
        d2, _ = self.index_.search(
            self._normalised(penultimate_features(self.model, x).features), self.k_
        )
        return -np.sqrt(np.maximum(d2[:, -1].astype(np.float64), 0.0))


def _head(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The logit layer's weight (C, F) and bias (C,) as float64 arrays."""
    _, weight, bias = head_of(model)
    return weight.detach().double().cpu().numpy(), bias.detach().double().cpu().numpy()


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


class ReActDetector(OODDetector):
    """Energy of the logits recomputed from clipped penultimate features ``min(f, c)``.

    ``c`` is the ``percentile``-th percentile of all training activations (every feature of
    every training point pooled; Sun et al. 2021 use 90). The logits are ``W min(f, c) + b``
    with the model's last ``nn.Linear``; ``percentile=100`` clips at the largest training
    activation, so on points inside that range ReAct equals :class:`EnergyDetector`.

    Args:
        percentile: in (0, 100].
        temperature: T > 0 of the energy.
    """

    name = "react"

    def __init__(
        self, model: nn.Module, *, percentile: float = 90.0, temperature: float = 1.0, **kwargs
    ):
        super().__init__(model, **kwargs)
        if not 0 < percentile <= 100:
            raise InputError(f"percentile must be in (0, 100] (got {percentile})")
        if not temperature > 0:
            raise InputError(f"temperature must be > 0 (got {temperature})")
        self.percentile, self.temperature = float(percentile), float(temperature)

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        f = penultimate_features(self.model, x).features.double().numpy()
        self.threshold_ = float(np.percentile(f, self.percentile))
        self.weight_, self.bias_ = _head(self.model)

    def _score(self, x: Tensor) -> np.ndarray:
        f = penultimate_features(self.model, x).features.double().numpy()
        logits = np.minimum(f, self.threshold_) @ self.weight_.T + self.bias_
        t = self.temperature
        return t * _logsumexp(logits / t)


def vim_principal_dim(n_features: int) -> int:
    """The principal dimension D of ViM by the paper's rule for a feature width N:
    1000 if N ≥ 1500, 512 if N ≥ 768, else N // 2 (at least 1)."""
    if n_features >= 1500:
        return 1000
    if n_features >= 768:
        return 512
    return max(n_features // 2, 1)


class ViMDetector(OODDetector):
    """Virtual-logit matching (Wang et al. 2022).

    With the logit layer ``W`` (C, F), ``b`` (C,), the origin is ``u = −pinv(W) b``. The principal
    space P is spanned by the top-D eigenvectors of the (uncentred) covariance of the training
    features ``f − u``; the residual ``x^{P⊥}`` is the part of ``f − u`` off P. With
    ``α = Σ_train max_c ℓ_c / Σ_train ‖x^{P⊥}‖`` the virtual logit is ``ℓ_0 = α‖x^{P⊥}‖`` and the
    OOD probability is ``softmax(ℓ_0, ℓ_1..ℓ_C)_0``; the in-distribution score returned,
    ``logsumexp(ℓ) − ℓ_0``, ranks inputs in the reverse order of that probability.

    Args:
        principal_dim: D, in [1, F − 1]; None uses :func:`vim_principal_dim` (F // 2 for
            feature widths below 768: D = 42 for LeNet's 84 features).
    """

    name = "vim"

    def __init__(self, model: nn.Module, *, principal_dim: int | None = None, **kwargs):
        super().__init__(model, **kwargs)
        if principal_dim is not None and (
            isinstance(principal_dim, bool) or not isinstance(principal_dim, int)
        ):
            raise InputError(f"principal_dim must be an integer or None (got {principal_dim!r})")
        self.principal_dim = principal_dim

    def _fit(self, x: Tensor, y: Tensor | None) -> None:
        out = penultimate_features(self.model, x)
        f, logits = out.features.double().numpy(), out.logits.double().numpy()
        w, b = _head(self.model)
        width = f.shape[1]
        d = vim_principal_dim(width) if self.principal_dim is None else self.principal_dim
        if not 1 <= d < width:
            raise InputError(
                f"principal_dim must be in [1, {width - 1}] for {width} features (got {d})"
            )
        self.origin_ = -np.linalg.pinv(w) @ b
        centred = f - self.origin_
        _, vectors = np.linalg.eigh(centred.T @ centred / len(centred))
        self.residual_basis_ = vectors[:, : width - d]  # eigh sorts ascending: the smallest
        self.principal_dim_ = d
        self.alpha_ = float(logits.max(axis=1).sum() / self._residual_norm(f).sum())

    def _residual_norm(self, f: np.ndarray) -> np.ndarray:
        return np.linalg.norm((f - self.origin_) @ self.residual_basis_, axis=1)

    def _score(self, x: Tensor) -> np.ndarray:
        out = penultimate_features(self.model, x)
        f, logits = out.features.double().numpy(), out.logits.double().numpy()
        return _logsumexp(logits) - self.alpha_ * self._residual_norm(f)
