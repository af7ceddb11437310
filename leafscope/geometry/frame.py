"""The map ``q = 2√p`` whose pull-back is G, and the adapted frame of G at a point.

``q(x) = 2√p(x)`` maps the input space to the sphere of radius 2 in R^C (``|q|² = 4Σp = 4``).
Its Jacobian ``A = Dq`` has rows ``∂q_i = √p_i ∇ log p_i``: it is exactly the factor of
:class:`leafscope.information.DataInformation` (computed here through a pivoted log-softmax,
accurate also at saturated points), so ``G = AᵀA`` is the pull-back of the
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
from torch.func import jacrev, vmap

from leafscope.errors import InputError
from leafscope.information import check_inputs, eval_mode, logits_of
from leafscope.information.jacobian import cast_model, constant_parameters

__all__ = ["LeafFrame", "leaf_frame", "model_in", "pivoted_log_softmax", "sqrt_probability"]


def model_in(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model`` itself when its parameters already have ``dtype``, else a cast copy (eval)."""
    cast = cast_model(model, dtype)
    return cast if cast is model else cast.eval()


def pivoted_log_softmax(logits: Tensor) -> Tensor:
    """``log softmax`` of a logit vector (C,), written around its largest entry ŷ:
    ``log p = z − log(1 + Σ_{i≠ŷ} e^{z_i})`` with ``z = s − s_ŷ``.

    Same values as :func:`torch.log_softmax`, better derivatives at saturated points: there
    the usual form differentiates ``log p_ŷ`` as ``ds_ŷ − Σ_i p_i ds_i``, a difference of two
    nearly equal numbers whose true value is ``O(1 − p_ŷ)``; here it is
    ``−(1 − p_ŷ) Σ_{i≠ŷ} w_i dz_i`` with no cancellation. ŷ is fixed at the point (the
    argmax is piecewise constant), so the function is the same smooth one.
    """
    pivot = logits.argmax(dim=0, keepdim=True)
    z = logits - logits.gather(0, pivot)
    is_pivot = torch.arange(logits.shape[0], device=logits.device) == pivot
    rest = torch.logsumexp(z.masked_fill(is_pivot, -torch.inf), dim=0)
    return z - torch.nn.functional.softplus(rest)


def sqrt_probability(model: nn.Module, shape: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
    """``z ↦ q(z) = 2√softmax(model(z))`` for one flattened point ``z`` (n,) → (C,), computed
    as ``2·exp(½ log p)`` with the pivoted log-softmax (:func:`pivoted_log_softmax`: no
    underflow before the square root, no cancellation in its derivatives). For
    :mod:`torch.func` transforms (``vmap``, ``jvp``, ``jacrev``)."""

    def q(z: Tensor) -> Tensor:
        logits = model(z.reshape(1, *shape))[0]
        return 2.0 * torch.exp(0.5 * pivoted_log_softmax(logits))

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

    def q(self) -> Tensor:
        """``(N, C)`` the points' images ``q = 2√p`` (on the sphere of radius 2)."""
        return 2.0 * self.probs.clamp_min(0).sqrt()

    def project_normal_space(self, y: Tensor) -> Tensor:
        """Orthogonal projection of ``y`` (N, ..., C) onto ``(Im A)^⊥`` in R^C (per point), the
        normal space of the image of q near x.

        At rank C − 1 this space is exactly ``span q`` (``qᵀA = 0`` and a dimension count), and
        that exact form is used: the complement of the computed ``U_r`` carries a rounding error
        of order ``eps·σ_1/σ_{C−1}`` which the large tangential parts of second derivatives along
        weak directions would amplify. At lower rank: ``I − U_r U_rᵀ`` from the SVD.
        """
        u = self.u * self.mask[:, None, :]
        lead = y.shape[1:-1]
        flat = y.reshape(y.shape[0], -1, y.shape[-1])
        numeric = flat - torch.einsum("nmc,nck,ndk->nmd", flat, u, u)
        unit = self.q() / self.q().norm(dim=1, keepdim=True)
        exact = torch.einsum("nmc,nc,nd->nmd", flat, unit, unit)
        full = (self.rank == self.num_classes - 1)[:, None, None]
        return torch.where(full, exact, numeric).reshape(y.shape[0], *lead, y.shape[-1])


def leaf_frame(
    model: nn.Module,
    x: Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    rtol: float | None = None,
    chunk_size: int | None = None,
) -> LeafFrame:
    """The oriented frame of G at the points ``x`` ``(N, *shape)``: ``A = Dq`` by reverse mode (C
    backward passes per point, :func:`sqrt_probability`), its thin SVD and numerical rank.

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``, C ≥ 2 (eval mode).
        x: points.
        dtype: compute dtype (float64 recommended; the model is copied when it differs).
        rtol: rank tolerance: σ_k counts when above ``rtol·σ_1`` (default ``max(C, n)·eps``,
            NumPy's rule, as in :meth:`leafscope.information.InformationMatrix.rank`).
        chunk_size: points per vectorised Jacobian chunk.
    """
    check_inputs(x, "points")
    if rtol is not None and not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise InputError(f"rtol must be in (0, 1) or None (got {rtol!r})")
    model = model_in(model, dtype)
    flat = x.detach().to(dtype).reshape(x.shape[0], -1)
    shape = tuple(x.shape[1:])
    with eval_mode(model), constant_parameters(model):
        with torch.no_grad():
            logits_of(model, flat[:1].reshape(1, *shape))
        q = sqrt_probability(model, shape)
        a, q0 = vmap(jacrev(lambda z: (q(z), q(z)), has_aux=True), chunk_size=chunk_size)(flat)
    a, q0 = a.detach(), q0.detach()
    c = a.shape[1]
    u_full, s_full, vh = torch.linalg.svd(a, full_matrices=False)
    k = c - 1
    u, s, v = u_full[:, :, :k], s_full[:, :k], vh[:, :k]
    probs = (q0 / 2) ** 2
    predicted = probs.argmax(dim=1)
    if rtol is None:  # NumPy's matrix_rank rule, as InformationMatrix.rank
        rtol = max(c, flat.shape[1]) * torch.finfo(dtype).eps
    rank = (s > rtol * s_full[:, :1]).sum(dim=1)
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
