"""Dense reference routes for the second-order quantities (small models only, float64).

These are the independent checks of :mod:`.curvature`: full Hessians (n×n per class), the
intrinsic Riemann tensor of the transverse metric in coordinates (third derivatives of the
model by nested autodiff), and finite differences on the level sets of p. They form
``n×n`` or ``C×n×n`` arrays: keep ``n`` to a few dozen.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import hessian, jacfwd, jacrev

from leafscope.geometry.frame import model_in, sqrt_probability
from leafscope.information import eval_mode
from leafscope.information.jacobian import constant_parameters

__all__ = [
    "coordinate_sectional_curvature",
    "dense_derivatives",
    "dense_integrability",
    "dense_shape_operator_eigenvalues",
    "intrinsic_transverse_curvature",
    "level_set_acceleration",
]


def _q(model: nn.Module, x: Tensor, dtype: torch.dtype):
    model = model_in(model, dtype)
    shape = tuple(x.shape)
    return model, sqrt_probability(model, shape), x.detach().to(dtype).reshape(-1)


def dense_derivatives(
    model: nn.Module, x: Tensor, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor]:
    """``q(x)`` (C,), ``A = Dq`` (C, n) and the full Hessians ``∇²q_c`` (C, n, n) at one point
    ``x`` (*shape)."""
    model, q, z = _q(model, x, dtype)
    with eval_mode(model), constant_parameters(model):
        return q(z).detach(), jacrev(q)(z).detach(), hessian(q)(z).detach()


def _kernel_basis(a: Tensor, rank: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """SVD pieces of A (C, n): U_r, σ_r, V_r (r, n) and an orthonormal basis of ker A (n−r, n)."""
    u, s, vh = torch.linalg.svd(a, full_matrices=True)
    return u[:, :rank], s[:rank], vh[:rank], vh[rank:]


def dense_integrability(
    model: nn.Module, x: Tensor, rank: int, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """Integrability tensor from full Hessians: frame fields ``E_k = Σ_c (U_ck/σ_k) ∇q_c``
    (constant coefficients), ``[E_i, E_j] = DE_j·E_i − DE_i·E_j`` at x, projected on ker A.

    Returns:
        ``(omega, v)``: Ω (r, r, n) on the frame ``v`` (r, n) of right singular vectors.
    """
    _, a, h = dense_derivatives(model, x, dtype)
    u, s, v, ker = _kernel_basis(a, rank)
    coef = u / s  # (C, r)
    dE = torch.einsum("ck,cab->kab", coef, h)  # DE_k (r, n, n)
    t = torch.einsum("jab,ib->ija", dE, v)  # t[i, j] = DE_j v_i
    brackets = t - t.transpose(0, 1)
    omega = torch.einsum("ija,ma,mb->ijb", brackets, ker, ker)
    return omega, v


def dense_shape_operator_eigenvalues(
    model: nn.Module, x: Tensor, rank: int, normal: Tensor, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Eigenvalues (ascending) of the shape operator of the level set of q through x along the
    unit normal ``normal`` ∈ D_x, from full Hessians: ``⟨S w, w'⟩ = −⟨A⁺ D²q(w, w'), ν⟩`` on an
    orthonormal basis of ker A."""
    _, a, h = dense_derivatives(model, x, dtype)
    u, s, v, ker = _kernel_basis(a, rank)
    beta = u @ ((v @ normal.to(a)) / s)  # (A⁺)ᵀ ν
    hess = torch.einsum("c,cab->ab", beta, h)
    return torch.linalg.eigvalsh(-ker @ hess @ ker.T)


def level_set_acceleration(
    model: nn.Module,
    x: Tensor,
    w: Tensor,
    rank: int,
    *,
    h: float = 1e-3,
    dtype: torch.dtype = torch.float64,
    newton_steps: int = 30,
) -> Tensor:
    """``II(w, w)`` of the level set of q through x by finite differences.

    For ``t ∈ {−h, 0, h}`` the point ``x + t w + V_rᵀ y(t)`` of the level set ``q = q(x)`` is
    found by Gauss–Newton in the r coordinates y of the slice along D_x; the normal part of the
    curve's acceleration is ``V_rᵀ (y(h) − 2y(0) + y(−h))/h²`` (second-order accurate, y(0) = 0).
    ``w`` must lie in ker A (it is projected there).
    """
    model, q, z0 = _q(model, x, dtype)
    with eval_mode(model), constant_parameters(model):
        a = jacrev(q)(z0)
        _, _, v, ker = _kernel_basis(a, rank)
        w = ker.T @ (ker @ w.reshape(-1).to(z0))
        target = q(z0)

        def solve(t: float) -> Tensor:
            y = torch.zeros(rank, dtype=z0.dtype)
            for _ in range(newton_steps):
                z = z0 + t * w + v.T @ y
                residual = q(z) - target
                jac = jacrev(q)(z) @ v.T
                step = torch.linalg.lstsq(jac, residual[:, None]).solution[:, 0]
                y = y - step
                if float(step.norm()) < 1e-15 * (1 + float(y.norm())):
                    break
            return y

        y_plus, y_minus = solve(h), solve(-h)
    return v.T @ ((y_plus + y_minus) / h**2)


def coordinate_sectional_curvature(
    metric: Callable[[Tensor], Tensor], t0: Tensor, i: int = 0, j: int = 1
) -> Tensor:
    """Sectional curvature of the coordinate plane ``(∂_i, ∂_j)`` of the metric ``t ↦ g(t)``
    (r×r, symmetric positive definite) at ``t0``, from the Levi-Civita connection in
    coordinates (autodiff to second order of g):

        Γ^l_{ab} = ½ g^{lm}(∂_a g_mb + ∂_b g_ma − ∂_m g_ab),
        R^l_{abc} = ∂_a Γ^l_{bc} − ∂_b Γ^l_{ac} + Γ^l_{am} Γ^m_{bc} − Γ^l_{bm} Γ^m_{ac},
        K(∂_i, ∂_j) = ⟨R(∂_i, ∂_j)∂_j, ∂_i⟩ / (g_ii g_jj − g_ij²) = R^l_{ijj} g_li / (...).

    (Convention ``R(X, Y)Z = ∇_X∇_Y Z − ∇_Y∇_X Z − ∇_[X,Y] Z``; the round sphere of radius ρ
    gives ``K = 1/ρ²``.)
    """

    def christoffel(t: Tensor) -> Tensor:
        g = metric(t)
        dg = jacfwd(metric)(t)  # dg[a, b, c] = ∂_c g_ab
        lower = 0.5 * (dg.permute(0, 2, 1) + dg - dg.permute(2, 0, 1))  # [m, a, b]
        return torch.einsum("lm,mab->lab", torch.linalg.inv(g), lower)

    gamma = christoffel(t0)
    d_gamma = jacfwd(christoffel)(t0)  # [l, a, b, c] = ∂_c Γ^l_{ab}
    riemann = (
        d_gamma.permute(0, 3, 1, 2)  # ∂_a Γ^l_{bc} -> [l, a, b, c]
        - d_gamma.permute(0, 1, 3, 2)  # ∂_b Γ^l_{ac} -> [l, a, b, c]
        + torch.einsum("lam,mbc->labc", gamma, gamma)
        - torch.einsum("lbm,mac->labc", gamma, gamma)
    )
    g = metric(t0)
    numerator = torch.einsum("l,l->", riemann[:, i, j, j], g[:, i])
    return numerator / (g[i, i] * g[j, j] - g[i, j] ** 2)


def intrinsic_transverse_curvature(
    model: nn.Module,
    x: Tensor,
    u: Tensor,
    v: Tensor,
    rank: int,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Sectional curvature of the transverse metric on the plane ``span(u, v)`` ⊂ D_x, computed
    intrinsically: coordinates ``t ↦ x + E t`` on the slice ``x + D_x`` with ``E`` = (u, v,
    the rest of an orthonormal basis of D_x), the metric ``g(t) = Eᵀ G(x + E t) E``, its
    Christoffel symbols and Riemann tensor (:func:`coordinate_sectional_curvature`). No Gauss
    equation, no use of the sphere: third derivatives of the model by nested autodiff."""
    model, q, z0 = _q(model, x, dtype)
    with eval_mode(model), constant_parameters(model):
        a = jacrev(q)(z0)
        _, _, vr, _ = _kernel_basis(a, rank)
        u, v = u.reshape(-1).to(z0), v.reshape(-1).to(z0)
        plane = torch.stack([u, v])
        rest = vr - (vr @ torch.linalg.pinv(plane)) @ plane  # the part of D_x outside the plane
        extra = torch.linalg.svd(rest, full_matrices=False)[2][: rank - 2]
        coords = torch.cat([plane, extra]).T  # (n, r)

        def metric(t: Tensor) -> Tensor:
            jac = jacrev(q)(z0 + coords @ t) @ coords
            return jac.T @ jac

        return coordinate_sectional_curvature(
            metric, torch.zeros(rank, dtype=z0.dtype), 0, 1
        ).detach()
