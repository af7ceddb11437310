"""Second-order geometry of G, matrix-free: transverse sectional curvature, the integrability
tensor of D = Im G, and the principal curvatures of the kernel leaves (``docs/geometry.md``).

Everything is computed from the oriented frame ``A = Dq = U Σ Vᵀ`` of :mod:`.frame`
(``q = 2√p``, C backward passes per point) and directional derivatives of ``q`` through
:mod:`torch.func`; no n×n matrix is formed.

* **Transverse sectional curvature.** The metric G induces on the local leaf space (the
  quotient by the kernel leaves, the level sets of p) is the metric of the image ``q(x + D_x)``
  in R^C: G restricted to the affine slice ``x + D_x`` is the pull-back of the Euclidean metric
  by the immersion ``q``. By the Gauss equation, for a plane spanned by u, v ∈ D_x,

      K(u, v) = (⟨N D²q(u,u), N D²q(v,v)⟩ − |N D²q(u,v)|²) / (G(u,u) G(v,v) − G(u,v)²),

  with ``N`` the orthogonal projection of R^C onto ``(Im A)^⊥``. Second directional
  derivatives come from forward-over-forward ``jvp`` (3 per plane). At a point of full rank
  C−1 the image is an open piece of the sphere of radius 2, so K = 1/4 for every model and
  plane (the known value this computation must reproduce; C ≥ 3).
* **Integrability tensor** of D: ``Ω(X, Y) = P_ker [X, Y]`` for X, Y ∈ D. With the frame
  fields ``E_k = ∇φ_k``, ``φ_k = u_kᵀq/σ_k`` (``E_k(x) = v_k``), ``[E_i, E_j](x) = H_j v_i −
  H_i v_j`` (``H_k = ∇²φ_k``): one ``jvp`` of the (r×n) Jacobian of ``φ`` per direction v_i,
  as in :mod:`leafscope.foliation.brackets`. Norm: ``(Σ_{i<j} |Ω(v_i, v_j)|²)^{1/2}``.
* **Principal curvatures** of the kernel leaf (level set of q) through x along the normal
  ``v_k``: the eigenvalues of the shape operator ``S_k = −P_ker H_k P_ker`` on ``ker G_x``
  (second fundamental form ``II(w, w') = −A⁺ D²q(w, w')``), by Lanczos with
  Hessian-vector products (forward-over-reverse).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import grad, jacrev, jvp, vmap

from leafscope.errors import InputError, check_positive_int
from leafscope.geometry.frame import LeafFrame, leaf_frame, model_in, sqrt_probability
from leafscope.information import eval_mode
from leafscope.information.jacobian import constant_parameters

__all__ = [
    "IntegrabilityResult",
    "LeafGeometry",
    "PrincipalCurvatures",
    "integrability_tensor",
    "leaf_geometry",
    "leaf_principal_curvatures",
    "point_seeds",
    "random_planes",
    "transverse_sectional_curvature",
]

#: The sectional curvature of the Fisher–Rao metric of the simplex (sphere of radius 2).
FISHER_RAO_CURVATURE = 0.25


def point_seeds(seed: int, count: int) -> list[int]:
    """Per-point seeds ``seed·1_000_003 + i`` (i = 0..count−1): callers that shard points pass
    the data index as ``i`` so that a point gets the same draws in any shard."""
    return [int(seed) * 1_000_003 + i for i in range(count)]


def _seeds(seeds: Sequence[int] | None, n: int) -> list[int]:
    if seeds is None:
        return point_seeds(0, n)
    seeds = [int(s) for s in seeds]
    if len(seeds) != n:
        raise InputError(f"seeds must give one seed per point ({n}), got {len(seeds)}")
    return seeds


PLANE_SAMPLING = ("pixel", "transverse")


def random_planes(
    frame: LeafFrame, planes: int, seeds: Sequence[int], sampling: str = "pixel"
) -> tuple[Tensor, Tensor]:
    """``planes`` random 2-planes of each ``D_x``, as pairs of spanning vectors.

    Two Gaussian vectors ``a, b ∈ R^r`` (coordinates inside the rank, drawn from a generator
    seeded by the point's seed) are orthonormalised, then

    * ``sampling="pixel"`` (default): ``u = Σ_k a_k v_k``: planes uniform among the 2-planes of
      D_x for the pixel metric, ``|u| = |v| = 1``, ``u ⟂ v``;
    * ``sampling="transverse"``: ``u = Σ_k a_k v_k/σ_k``: planes uniform for the transverse
      metric (``Au = U a``, ``G(u, u) = 1``, ``G(u, v) = 0``). Their vectors have length up to
      ``1/σ_{C−1}``: at saturated points (σ_{C−1}/σ_1 below ~1e-8) forward-mode rounding in the
      softmax then spoils the second derivatives, which the pixel planes avoid.

    Returns:
        ``(u, v)``, each ``(N, planes, n)``.
    """
    if sampling not in PLANE_SAMPLING:
        raise InputError(f"sampling must be one of {', '.join(PLANE_SAMPLING)} (got {sampling!r})")
    k = frame.sigma.shape[1]
    dtype, device = frame.sigma.dtype, frame.sigma.device
    coords = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        coords.append(torch.randn((planes, 2, k), generator=gen, dtype=torch.float64))
    ab = torch.stack(coords).to(device=device, dtype=dtype) * frame.mask[:, None, None, :]
    a = ab[:, :, 0]
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    b = ab[:, :, 1] - (ab[:, :, 1] * a).sum(-1, keepdim=True) * a
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    lift = frame.basis()  # (N, k, n): rows v_k
    if sampling == "transverse":
        safe = torch.where(frame.mask, frame.sigma, torch.ones_like(frame.sigma))
        lift = lift / safe[:, :, None]
    return torch.einsum("npk,nkd->npd", a, lift), torch.einsum("npk,nkd->npd", b, lift)


def _g_orthogonal(q, x: Tensor, u: Tensor, v: Tensor, chunk_size: int | None) -> Tensor:
    """``v − (G(u,v)/G(u,u)) u``, rescaled to the length of v: the same plane, spanned by a
    G-orthogonal pair, so that neither ``G(u,u)G(v,v) − G(u,v)²`` nor the numerator of the
    Gauss equation is a difference of nearly equal numbers when the plane's two G-lengths differ
    by orders of magnitude (saturated points). ``G(u, v) = ⟨Au, Av⟩`` with ``Au``, ``Av`` by
    forward mode (x, u, v: (P, n))."""

    def first(z: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return jvp(q, (z,), (a,))[1], jvp(q, (z,), (b,))[1]

    au, av = vmap(first, chunk_size=chunk_size)(x, u, v)
    guu = (au * au).sum(-1, keepdim=True)
    guv = (au * av).sum(-1, keepdim=True)
    w = v - torch.where(guu > 0, guv / guu.clamp_min(1e-300), 0.0) * u
    scale = v.norm(dim=-1, keepdim=True) / w.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return w * scale


def _derivatives(q, x: Tensor, u: Tensor, v: Tensor, chunk_size: int | None) -> Tensor:
    """``(P, 5, C)``: Dq·u, Dq·v, D²q(u,u), D²q(v,v), D²q(u,v) at the points x (P, n)
    (forward mode; the first derivatives come out of the same passes)."""

    def d2(z: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        first, second = jvp(lambda y: jvp(q, (y,), (a,))[1], (z,), (b,))
        return first, second

    def five(z: Tensor, a: Tensor, b: Tensor) -> Tensor:
        da, daa = d2(z, a, a)
        db, dbb = d2(z, b, b)
        _, dab = d2(z, a, b)
        return torch.stack([da, db, daa, dbb, dab])

    return vmap(five, chunk_size=chunk_size)(x, u, v)


def transverse_sectional_curvature(
    model: nn.Module,
    x: Tensor,
    *,
    planes: int = 4,
    seeds: Sequence[int] | None = None,
    sampling: str = "pixel",
    dtype: torch.dtype = torch.float64,
    rtol: float | None = None,
    chunk_size: int | None = 8,
    frame: LeafFrame | None = None,
) -> Tensor:
    """Sectional curvatures of the metric G induces on the local leaf space, on random 2-planes.

    The leaf space near x is identified with the transversal slice ``x + D_x`` carrying the
    (nondegenerate) restriction of G; ``q`` maps it isometrically onto its image in R^C, and the
    curvature is that of the image by the Gauss equation (module docstring), with ``Au``, ``Av``
    and the second derivatives from the same forward-mode passes. The planes are drawn by
    :func:`random_planes`.

    Args:
        model: classifier ``(N, *shape) → (N, C)``.
        x: points ``(N, *shape)``.
        planes: 2-planes per point.
        seeds: one seed per point for the planes (default :func:`point_seeds` ``(0, N)``).
        sampling: ``pixel`` or ``transverse`` (:func:`random_planes`).
        dtype: compute dtype (float64 recommended).
        rtol: rank tolerance (see :func:`leaf_frame`).
        chunk_size: (point, plane) pairs per vectorised chunk.
        frame: a precomputed :func:`leaf_frame` of these points (same model and dtype).

    Returns:
        ``(N, planes)``: K per plane; NaN where the rank is below 2 (no 2-plane in the leaf
        space). At points of rank C − 1 every value is 1/4 up to rounding.
    """
    check_positive_int(planes, "planes")
    n_pts = x.shape[0]
    seeds = _seeds(seeds, n_pts)
    model = model_in(model, dtype)
    frame = frame if frame is not None else leaf_frame(model, x, dtype=dtype, rtol=rtol)
    u, v = random_planes(frame, planes, seeds, sampling)
    q = sqrt_probability(model, frame.shape)
    xs = frame.x[:, None, :].expand(-1, planes, -1).reshape(n_pts * planes, -1)
    us, vs = u.reshape(n_pts * planes, -1), v.reshape(n_pts * planes, -1)
    with eval_mode(model), constant_parameters(model):
        vs = _g_orthogonal(q, xs, us, vs, chunk_size)
        d = _derivatives(q, xs, us, vs, chunk_size).reshape(n_pts, planes, 5, -1)
    normal = frame.project_normal_space(d[:, :, 2:])
    uu, vv, uv = normal[:, :, 0], normal[:, :, 1], normal[:, :, 2]
    numerator = (uu * vv).sum(-1) - (uv * uv).sum(-1)
    au, av = d[:, :, 0], d[:, :, 1]  # Au, Av from the same passes as the second derivatives
    area = (au * au).sum(-1) * (av * av).sum(-1) - (au * av).sum(-1) ** 2
    curvature = numerator / area
    return torch.where(frame.rank[:, None] >= 2, curvature, torch.nan)


@dataclass(frozen=True)
class IntegrabilityResult:
    """The integrability tensor ``Ω(v_i, v_j) = P_ker [E_i, E_j](x)`` of D at N points.

    Attributes:
        tensor: ``(N, C-1, C-1, n)`` Ω on the orthonormal frame ``v_k`` of D_x (antisymmetric in
            i, j; zero rows and columns beyond the rank).
        brackets: ``(N, C-1, C-1, n)`` the whole brackets ``[E_i, E_j](x)`` (Ω is their part
            in ker G).
        norm: ``(N,)`` ``(Σ_{i<j} |Ω_ij|²)^{1/2}`` (1/input units).
        bracket_norm: ``(N,)`` the same sum over the whole brackets.
        ratio: ``(N,)`` ``norm / bracket_norm`` (0 where the brackets vanish): the fraction of
            the brackets that leaves D.
        singular_values: ``(N, (C-1)(C-2)/2)`` of the stacked vectors ``Ω_ij`` (i < j),
            descending: their number above a tolerance is the rank excess of the bracket test
            (``dim span{D, [D, D]} − dim D``).
    """

    tensor: Tensor
    brackets: Tensor
    norm: Tensor
    bracket_norm: Tensor
    ratio: Tensor
    singular_values: Tensor


def integrability_tensor(
    model: nn.Module,
    x: Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    rtol: float | None = None,
    chunk_size: int | None = 4,
    frame: LeafFrame | None = None,
) -> IntegrabilityResult:
    """The integrability tensor of ``D = Im G`` at the points ``x`` (module docstring).

    Zero (to rounding) for a linear softmax model everywhere and for piecewise-linear (ReLU,
    max-pool) networks inside a linear region; nonzero in general for smooth activations.
    """
    model = model_in(model, dtype)
    frame = frame if frame is not None else leaf_frame(model, x, dtype=dtype, rtol=rtol)
    q = sqrt_probability(model, frame.shape)
    coef = frame.coefficients()  # (N, k, C)
    basis = frame.basis()  # (N, k, n)

    def per_point(z: Tensor, c: Tensor, e: Tensor) -> Tensor:
        jac = jacrev(lambda y: c @ q(y))  # y ↦ (k, n): rows ∇φ_j(y)
        return vmap(lambda d: jvp(jac, (z,), (d,))[1])(e)  # t[i, j] = H_j e_i

    with eval_mode(model), constant_parameters(model):
        t = vmap(per_point, chunk_size=chunk_size)(frame.x, coef, basis)
    brackets = t - t.transpose(1, 2)
    k = brackets.shape[1]
    omega = frame.project_kernel(brackets.reshape(brackets.shape[0], k * k, -1)).reshape(
        brackets.shape
    )
    iu, ju = torch.triu_indices(k, k, offset=1)
    upper = omega[:, iu, ju]
    norm = upper.pow(2).sum(dim=(1, 2)).sqrt()
    bracket_norm = brackets[:, iu, ju].pow(2).sum(dim=(1, 2)).sqrt()
    ratio = torch.where(bracket_norm > 0, norm / bracket_norm.clamp_min(1e-300), 0.0)
    singular = torch.linalg.svdvals(upper) if upper.shape[1] else upper.new_zeros(upper.shape[0], 0)
    return IntegrabilityResult(omega, brackets, norm, bracket_norm, ratio, singular)


@dataclass(frozen=True)
class PrincipalCurvatures:
    """Principal curvatures of the kernel leaf through each point along the top normals.

    Attributes:
        values: ``(N, normals, count)`` the ``count`` eigenvalues of largest magnitude of the
            shape operator ``S_k`` along the normal ``v_k`` (k = 1..normals, the top
            eigenvectors of G, oriented as in :class:`LeafFrame`), sorted by ``|κ|`` descending,
            sign kept (1/input units; κ < 0: the leaf bends away from ``v_k``). NaN for normals
            beyond the rank.
        residuals: ``(N, normals, count)`` Lanczos residual norms ``‖S u − κ u‖`` of the Ritz
            pairs (a Ritz value lies within its residual of an eigenvalue).
        steps: Lanczos steps taken (the whole kernel when it is no larger).
    """

    values: Tensor
    residuals: Tensor
    steps: int


def _hvp_fn(q):
    def hvp(z: Tensor, c: Tensor, w: Tensor) -> Tensor:
        return jvp(grad(lambda y: c @ q(y)), (z,), (w,))[1]

    return hvp


def leaf_principal_curvatures(
    model: nn.Module,
    x: Tensor,
    *,
    normals: int = 3,
    count: int = 5,
    steps: int = 40,
    seeds: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
    rtol: float | None = None,
    chunk_size: int | None = 16,
    frame: LeafFrame | None = None,
) -> PrincipalCurvatures:
    """Principal curvatures of the kernel leaf (level set of p) through each point.

    For the normal ``v_k`` the shape operator on ``T_xL = ker G_x`` is ``S_k = −P_ker H_k
    P_ker`` with ``H_k`` the Hessian of ``φ_k = u_kᵀ q/σ_k`` (``docs/geometry.md``); its
    extreme eigenvalues come from Lanczos with full reorthogonalisation on ker G (one
    Hessian-vector product per step, vectorised over points and normals). A breakdown (an
    invariant subspace found) restarts with a fresh vector orthogonal to the basis, so with
    ``steps ≥ dim ker`` the values are exact.

    Args:
        normals: the top ``normals`` eigen-directions of G used as normals (≤ C−1).
        count: principal curvatures kept per normal (largest ``|κ|``).
        steps: Lanczos steps (Hessian-vector products) per normal.
        seeds: one seed per point (start vectors); default :func:`point_seeds` ``(0, N)``.
    """
    for name, value in (("normals", normals), ("count", count), ("steps", steps)):
        check_positive_int(value, name)
    model = model_in(model, dtype)
    frame = frame if frame is not None else leaf_frame(model, x, dtype=dtype, rtol=rtol)
    k_all = frame.sigma.shape[1]
    if normals > k_all:
        raise InputError(f"normals must be <= C - 1 = {k_all} (got {normals})")
    n_pts, n = frame.x.shape
    seeds = _seeds(seeds, n_pts)
    ker_dim = n - int(frame.rank.min())
    m = min(steps, ker_dim)
    q = sqrt_probability(model, frame.shape)
    hvp = vmap(_hvp_fn(q), chunk_size=chunk_size)
    coef = frame.coefficients()[:, :normals]  # (N, t, C)
    basis = frame.basis()  # (N, k, n)
    big = n_pts * normals
    zs = frame.x[:, None, :].expand(-1, normals, -1).reshape(big, n)
    cs = coef.reshape(big, -1)
    vb = basis[:, None].expand(-1, normals, -1, -1).reshape(big, k_all, n)

    def proj(w: Tensor) -> Tensor:  # onto ker G, per problem
        return w - torch.einsum("bkd,bk->bd", vb, torch.einsum("bkd,bd->bk", vb, w))

    def op(w: Tensor) -> Tensor:
        with eval_mode(model), constant_parameters(model):
            return -proj(hvp(zs, cs, proj(w)))

    gens = [torch.Generator().manual_seed(int(s) + 7919) for s in seeds]

    def fresh(basis_q: Tensor, count_q: int) -> Tensor:
        draws = torch.stack(
            [torch.randn(normals, n, generator=g, dtype=torch.float64) for g in gens]
        )
        w = proj(draws.reshape(big, n).to(frame.x))
        for _ in range(2):
            if count_q:
                prev = basis_q[:, :count_q]
                w = w - torch.einsum("bjd,bj->bd", prev, torch.einsum("bjd,bd->bj", prev, w))
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-300)

    qs = torch.zeros(big, m + 1, n, dtype=frame.x.dtype, device=frame.x.device)
    alpha = torch.zeros(big, m, dtype=frame.x.dtype, device=frame.x.device)
    beta = torch.zeros(big, m, dtype=frame.x.dtype, device=frame.x.device)
    qs[:, 0] = fresh(qs, 0)
    eps = torch.finfo(frame.x.dtype).eps
    scale = torch.zeros(big, dtype=frame.x.dtype, device=frame.x.device)
    for j in range(m):
        w = op(qs[:, j])
        alpha[:, j] = (qs[:, j] * w).sum(1)
        for _ in range(2):  # full reorthogonalisation, twice
            prev = qs[:, : j + 1]
            w = w - torch.einsum("bjd,bj->bd", prev, torch.einsum("bjd,bd->bj", prev, w))
        b = w.norm(dim=1)
        scale = torch.maximum(scale, alpha[:, j].abs() + b)
        if j + 1 == m:
            beta[:, j] = b
            break
        broke = b <= 1e3 * eps * scale.clamp_min(1e-300)
        nxt = w / b.clamp_min(1e-300)[:, None]
        if bool(broke.any()):
            restart = fresh(qs, j + 1)
            nxt = torch.where(broke[:, None], restart, nxt)
            b = torch.where(broke, torch.zeros_like(b), b)
        beta[:, j] = b
        qs[:, j + 1] = nxt
    off = beta[:, :-1]
    tri = torch.diag_embed(alpha) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    theta, vecs = torch.linalg.eigh(tri)
    resid = (beta[:, -1:] * vecs[:, -1, :]).abs()
    if m == ker_dim:
        resid = torch.zeros_like(resid)  # the whole kernel: Ritz values are eigenvalues
    keep = min(count, m)
    order = theta.abs().argsort(dim=1, descending=True)[:, :keep]
    values = theta.gather(1, order).reshape(n_pts, normals, keep)
    residuals = resid.gather(1, order).reshape(n_pts, normals, keep)
    inside = frame.mask[:, :normals, None]
    values = torch.where(inside, values, torch.nan)
    residuals = torch.where(inside, residuals, torch.nan)
    if keep < count:
        pad = values.new_full((n_pts, normals, count - keep), torch.nan)
        values, residuals = torch.cat([values, pad], 2), torch.cat([residuals, pad], 2)
    return PrincipalCurvatures(values, residuals, m)


@dataclass(frozen=True)
class LeafGeometry:
    """All second-order quantities at N points (one frame shared by all).

    Attributes:
        frame: the :class:`LeafFrame`.
        sectional_curvature: ``(N, planes)`` (:func:`transverse_sectional_curvature`).
        integrability: :class:`IntegrabilityResult` (None when not computed).
        principal: :class:`PrincipalCurvatures` (None when not computed).
    """

    frame: LeafFrame
    sectional_curvature: Tensor
    integrability: IntegrabilityResult | None
    principal: PrincipalCurvatures | None


def leaf_geometry(
    model: nn.Module,
    x: Tensor,
    *,
    planes: int = 4,
    normals: int = 3,
    count: int = 5,
    steps: int = 40,
    seeds: Sequence[int] | None = None,
    sampling: str = "pixel",
    integrability: bool = True,
    principal: bool = True,
    dtype: torch.dtype = torch.float64,
    rtol: float | None = None,
    chunk_size: int | None = 8,
) -> LeafGeometry:
    """:func:`transverse_sectional_curvature`, :func:`integrability_tensor` and
    :func:`leaf_principal_curvatures` at the points ``x`` from one frame."""
    model = model_in(model, dtype)
    seeds = _seeds(seeds, x.shape[0])
    frame = leaf_frame(model, x, dtype=dtype, rtol=rtol)
    sectional = transverse_sectional_curvature(
        model, x, planes=planes, seeds=seeds, sampling=sampling, dtype=dtype,
        chunk_size=chunk_size, frame=frame,
    )  # fmt: skip
    half = None if chunk_size is None else max(1, chunk_size // 2)
    omega = (
        integrability_tensor(model, x, dtype=dtype, chunk_size=half, frame=frame)
        if integrability
        else None
    )
    normals = min(normals, frame.sigma.shape[1])
    curv = (
        leaf_principal_curvatures(
            model,
            x,
            normals=normals,
            count=count,
            steps=steps,
            seeds=seeds,
            dtype=dtype,
            chunk_size=chunk_size,
            frame=frame,
        )  # fmt: skip
        if principal
        else None
    )
    # a TorchScript model may keep parameters that require grad: hand back plain values
    return _detached(LeafGeometry(frame, sectional, omega, curv))


def _detached(value: Any) -> Any:
    """``value`` with every tensor (also inside dataclasses) detached from autograd."""
    if isinstance(value, Tensor):
        return value.detach()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return dataclasses.replace(
            value, **{f.name: _detached(getattr(value, f.name)) for f in fields if f.init}
        )
    return value
