"""The map ``q = 2√p`` whose pull-back is G, and the adapted frame of G at a point.

``q(x) = 2√p(x)`` maps the input space to the sphere of radius 2 in R^C (``|q|² = 4Σp = 4``).
Its Jacobian ``A = Dq`` has rows ``∂q_i = √p_i ∇ log p_i``: it is exactly the factor of
:class:`leafscope.information.DataInformation`, so ``G = AᵀA`` is the pull-back of the
Euclidean metric of R^C restricted to the sphere, i.e. of the Fisher–Rao metric of the simplex
(``Σ dp_i²/p_i = Σ dq_i²``). See ``docs/geometry.md``.

:class:`LeafFrame` holds the thin SVD ``A = U Σ Vᵀ`` at each point, oriented (signs fixed) and
with the numerical rank, and the scalar functions ``φ_k = u_kᵀ q / σ_k`` whose gradients at x are
the right singular vectors ``v_k`` (an orthonormal basis of ``D_x = Im G``): the integrability
tensor and the shape operators of the kernel leaves are Hessians of the ``φ_k``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.information import DataInformation, check_inputs, eval_mode
from leafscope.information.jacobian import cast_model

__all__ = ["LeafFrame", "leaf_frame", "model_in", "sqrt_probability"]


def model_in(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model`` itself when its parameters already have ``dtype``, else a cast copy (eval)."""
    cast = cast_model(model, dtype)
    return cast if cast is model else cast.eval()


def sqrt_probability(model: nn.Module, shape: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
    """``z ↦ q(z) = 2√softmax(model(z))`` for one flattened point ``z`` (n,) → (C,), computed
    as ``2·exp(½ log_softmax)`` (no underflow to 0 before the square root). For
    :mod:`torch.func` transforms (``vmap``, ``jvp``, ``jacrev``)."""

    def q(z: Tensor) -> Tensor:
        logits = model(z.reshape(1, *shape))[0]
        return 2.0 * torch.exp(0.5 * torch.log_softmax(logits, dim=0))

    return q


@dataclass(frozen=True)
class LeafFrame:
    """The oriented thin SVD of ``A = Dq`` at N points.

    Attributes:
        x: ``(N, n)`` the points, flattened, in the compute dtype.
        shape: the shape of one point.
        probs: ``(N, C)`` class probabilities.
        predicted: ``(N,)`` predicted class ŷ.
        u: ``(N, C, C-1)`` left singular vectors (columns; tangent vectors of the sphere at q).
        sigma: ``(N, C-1)`` singular values σ_k, descending (eigenvalues of G are σ_k²).
        v: ``(N, C-1, n)`` right singular vectors (rows; eigenvectors of G, a basis of D_x).
        rank: ``(N,)`` numerical rank r (σ_k above ``rtol·σ_1``).
        mask: ``(N, C-1)`` bool, ``k < r``.

    Orientation: each pair ``(u_k, v_k)`` is flipped so that ``u_k[ŷ] ≥ 0``, i.e.
    ``⟨∇ log p_ŷ, v_k⟩ = σ_k u_k[ŷ] / √p_ŷ ≥ 0``: ``v_k`` points where the predicted class gains.
    """

    x: Tensor
    shape: tuple[int, ...]
    probs: Tensor
    predicted: Tensor
    u: Tensor
    sigma: Tensor
    v: Tensor
    rank: Tensor
    mask: Tensor

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[1])

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    def coefficients(self) -> Tensor:
        """``(N, C-1, C)``: row k is ``u_k / σ_k`` (zero beyond the rank), the coefficients of
        ``φ_k = u_kᵀ q / σ_k``, whose gradient at x is ``v_k``."""
        safe = torch.where(self.mask, self.sigma, torch.ones_like(self.sigma))
        coef = self.u.transpose(1, 2) / safe[:, :, None]
        return coef * self.mask[:, :, None]

    def basis(self) -> Tensor:
        """``(N, C-1, n)`` the rows ``v_k`` inside the rank (zero rows beyond it)."""
        return self.v * self.mask[:, :, None]

    def project_kernel(self, w: Tensor) -> Tensor:
        """Orthogonal projection of ``w`` (N, ..., n) onto ``ker G_x`` (per point)."""
        basis = self.basis()
        lead = w.shape[1:-1]
        flat = w.reshape(w.shape[0], -1, w.shape[-1])
        inside = torch.einsum("nmd,nkd,nke->nme", flat, basis, basis)
        return (flat - inside).reshape(w.shape[0], *lead, w.shape[-1])

    def project_normal_space(self, y: Tensor) -> Tensor:
        """Orthogonal projection of ``y`` (N, ..., C) onto ``(Im A)^⊥`` in R^C (per point): the
        normal space of the image ``q(x + D_x)``; at full rank it is ``span q``."""
        u = self.u * self.mask[:, None, :]
        lead = y.shape[1:-1]
        flat = y.reshape(y.shape[0], -1, y.shape[-1])
        inside = torch.einsum("nmc,nck,ndk->nmd", flat, u, u)
        return (flat - inside).reshape(y.shape[0], *lead, y.shape[-1])


def leaf_frame(
    model: nn.Module,
    x: Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    rtol: float | None = None,
    chunk_size: int | None = None,
) -> LeafFrame:
    """The oriented frame of G at the points ``x`` (N, *shape).

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``, C ≥ 2 (eval mode).
        x: points.
        dtype: compute dtype (float64 recommended; the model is copied when it differs).
        rtol: rank tolerance relative to σ_1 (default ``max(C, n)·eps``, NumPy's rule, as in
            :meth:`leafscope.information.InformationMatrix.rank`).
        chunk_size: points per vectorised Jacobian chunk.
    """
    check_inputs(x, "points")
    if rtol is not None and not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise InputError(f"rtol must be in (0, 1) or None (got {rtol!r})")
    model = model_in(model, dtype)
    with eval_mode(model):
        info = DataInformation(model, x.detach().to(dtype), chunk_size=chunk_size)
    c = info.num_classes
    u_full, s_full, vh = info.svd()
    k = c - 1
    u, s, v = u_full[:, :, :k], s_full[:, :k], vh[:, :k]
    probs = info.probs
    predicted = probs.argmax(dim=1)
    rank = info.rank(rtol).rank
    mask = torch.arange(k, device=rank.device)[None, :] < rank[:, None]
    top = u.gather(1, predicted[:, None, None].expand(-1, 1, k))[:, 0]  # (N, k): u_k[ŷ]
    sign = torch.where(top < 0, -1.0, 1.0).to(u.dtype)
    return LeafFrame(
        x=x.detach().to(dtype).reshape(x.shape[0], -1),
        shape=tuple(x.shape[1:]),
        probs=probs,
        predicted=predicted,
        u=u * sign[:, None, :],
        sigma=s,
        v=v * sign[:, :, None],
        rank=rank,
        mask=mask,
    )
