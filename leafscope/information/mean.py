"""The average of a batch of information matrices, e.g. the data-set Fisher matrix.

``M̄ = (1/N) Σ_k A_kᵀ A_k`` is stored as the stacked factor ``Ā`` (N·C, d) with rows
``A_k[i] / √N``, so ``M̄ = ĀᵀĀ`` exactly and its rank is at most N(C − 1). For the Fisher
matrix this is the (true, not empirical) Fisher of the model on the points: the expectation of
the outer product of ∇_w log p(y|x) over y ~ p(·|x), averaged over x.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from leafscope.errors import InputError
from leafscope.information.matrices import DENSE_LIMIT_BYTES, InformationMatrix

__all__ = ["MeanInformation"]


class MeanInformation:
    """Average ``M̄`` (d × d) of the N matrices of an :class:`InformationMatrix`.

    Args:
        matrices: per-sample matrices (e.g. ``FisherInformation(model, x)``).

    Examples:
        >>> from leafscope.information import FisherInformation
        >>> from leafscope.testing import tiny_mlp
        >>> F = FisherInformation(tiny_mlp(n_in=4), torch.rand(8, 4), dtype=torch.float64)
        >>> Fbar = F.mean()
        >>> bool(torch.isclose(Fbar.trace(), F.trace().mean()))
        True
    """

    def __init__(self, matrices: InformationMatrix):
        n, c, d = matrices.factor.shape
        if n == 0:
            raise InputError("cannot average an empty batch of information matrices")
        self.factor = matrices.factor.reshape(n * c, d) / math.sqrt(n)
        self.n_samples, self.num_classes, self.dim = n, c, d
        self._svd: tuple[Tensor, Tensor] | None = None

    @property
    def max_rank(self) -> int:
        """Upper bound on the rank: ``min(N(C − 1), d)``."""
        return min(self.n_samples * (self.num_classes - 1), self.dim)

    def _vector(self, v: Tensor) -> Tensor:
        if v.numel() != self.dim:
            raise InputError(f"v must have {self.dim} entries (got shape {tuple(v.shape)})")
        return v.reshape(self.dim).to(self.factor.dtype)

    def trace(self) -> Tensor:
        """Scalar trace (= the mean of the per-sample traces)."""
        return self.factor.pow(2).sum()

    def mv(self, v: Tensor) -> Tensor:
        """``M̄ v`` for ``v`` with d entries → (d,)."""
        v = self._vector(v)
        return self.factor.T @ (self.factor @ v)

    def quadratic(self, v: Tensor) -> Tensor:
        """Scalar ``vᵀ M̄ v`` (≈ 2 × the mean KL divergence for a small step v)."""
        return (self.factor @ self._vector(v)).pow(2).sum()

    def svd(self) -> tuple[Tensor, Tensor]:
        """Singular values ``S`` (r,) descending and right singular vectors ``Vh`` (r, d) of the
        stacked factor, r = min(N·C, d): M̄ = Vhᵀ diag(S²) Vh."""
        if self._svd is None:
            _, s, vh = torch.linalg.svd(self.factor, full_matrices=False)
            self._svd = (s, vh)
        return self._svd

    def eigenvalues(self) -> Tensor:
        """``(max_rank,)`` the possibly nonzero eigenvalues, descending."""
        return self.svd()[0][: self.max_rank] ** 2

    def eigh(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues ``(max_rank,)`` descending and eigenvectors ``(max_rank, d)`` as rows."""
        s, vh = self.svd()
        return s[: self.max_rank] ** 2, vh[: self.max_rank]

    def solve(self, v: Tensor, damping: float) -> Tensor:
        """``(M̄ + damping·I)⁻¹ v`` exactly through the SVD (Woodbury), ``damping > 0``."""
        if not damping > 0:
            raise InputError(f"damping must be > 0 (got {damping})")
        v = self._vector(v)
        s, vh = self.svd()
        coeff = vh @ v
        return vh.T @ (coeff / (s**2 + damping)) + (v - vh.T @ coeff) / damping

    def dense(self) -> Tensor:
        """The full (d, d) matrix. Only for small d: refuses above 2 GiB."""
        need = self.dim**2 * self.factor.element_size()
        if need > DENSE_LIMIT_BYTES:
            raise InputError(
                f"dense() would allocate {need / 1024**3:.1f} GiB for a {self.dim}×{self.dim} "
                "matrix; use eigh(), mv() or solve() instead"
            )
        return self.factor.T @ self.factor
