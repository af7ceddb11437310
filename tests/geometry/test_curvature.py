"""Second-order geometry of G against dense and finite-difference routes (docs/geometry.md).

Every check is float64 on small models: the matrix-free values (jvp, HVPs, Lanczos) against full
Hessians, the intrinsic Riemann tensor of the transverse metric by nested autodiff, and
finite differences on the level sets of p.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import jacrev

from leafscope.foliation import lie_brackets
from leafscope.geometry import (
    FISHER_RAO_CURVATURE,
    integrability_tensor,
    leaf_frame,
    leaf_geometry,
    leaf_principal_curvatures,
    point_seeds,
    random_planes,
    sqrt_probability,
    transverse_sectional_curvature,
)
from leafscope.geometry.reference import (
    coordinate_sectional_curvature,
    dense_derivatives,
    dense_integrability,
    dense_shape_operator_eigenvalues,
    intrinsic_transverse_curvature,
    level_set_acceleration,
)
from leafscope.information import DataInformation
from leafscope.testing import LinearSoftmax, tiny_cnn, tiny_mlp

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _mlp(activation: str, n_in: int = 6, n_classes: int = 4, seed: int = 0) -> nn.Module:
    return tiny_mlp(n_in=n_in, n_classes=n_classes, hidden=8, activation=activation, seed=seed)


def _points(n: int, dim: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


class Radial(nn.Module):
    """Two logits ``(0, |x|²/2)``: the level sets of p are the spheres |x| = R."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r2 = x.flatten(1).pow(2).sum(1, keepdim=True)
        return torch.cat([torch.zeros_like(r2), 0.5 * r2], dim=1)


# ----------------------------------------------------------------------------- the map q
def test_factor_is_the_jacobian_of_q_and_q_is_normal_to_it():
    model, x = _mlp("tanh"), _points(3, 6)
    frame = leaf_frame(model, x)
    q = sqrt_probability(model.double(), (6,))
    for i in range(3):
        a = jacrev(q)(x[i])
        rebuilt = frame.u[i] @ torch.diag(frame.sigma[i]) @ frame.v[i]
        assert torch.allclose(rebuilt, a, atol=1e-13)
        assert torch.allclose(q(x[i]).pow(2).sum(), torch.tensor(4.0, dtype=F64))
        assert float((q(x[i]) @ a).detach().abs().max()) < 1e-14  # qᵀA = 0: rank ≤ C − 1
    dense = DataInformation(model, x, dtype=F64).dense()
    a_all = torch.einsum("nck,nk,nkd->ncd", frame.u, frame.sigma, frame.v)
    assert torch.allclose(a_all.transpose(1, 2) @ a_all, dense, atol=1e-13)  # G = AᵀA


def test_frame_orientation_points_toward_the_predicted_class():
    model, x = _mlp("gelu"), _points(4, 6)
    frame = leaf_frame(model, x)
    info = DataInformation(model, x, dtype=F64)
    yhat = frame.predicted
    grad_log = info.factor[torch.arange(4), yhat] / frame.probs[torch.arange(4), yhat, None].sqrt()
    dots = torch.einsum("nd,nkd->nk", grad_log, frame.v)
    assert bool((dots >= -1e-12).all())


# ------------------------------------------------------------------ transverse curvature
def test_coordinate_curvature_of_known_surfaces():
    rho = 3.0

    def sphere(t):  # stereographic chart of the sphere of radius rho
        return 4 * rho**4 / (rho**2 + (t * t).sum()) ** 2 * torch.eye(2, dtype=t.dtype)

    def half_plane(t):
        return torch.eye(2, dtype=t.dtype) / t[1] ** 2

    t0 = torch.tensor([0.3, -0.2], dtype=F64)
    assert float(coordinate_sectional_curvature(sphere, t0)) == pytest.approx(1 / rho**2, 1e-12)
    t1 = torch.tensor([0.3, 1.7], dtype=F64)
    assert float(coordinate_sectional_curvature(half_plane, t1)) == pytest.approx(-1.0, 1e-12)


@pytest.mark.parametrize(
    ("activation", "n_classes"), [("tanh", 4), ("gelu", 5), ("relu", 4), ("sigmoid", 3)]
)
def test_transverse_curvature_is_a_quarter_at_full_rank(activation, n_classes):
    model, x = _mlp(activation, n_classes=n_classes), _points(4, 6)
    frame = leaf_frame(model, x)
    full = frame.rank == n_classes - 1
    assert int(full.sum()) >= 3
    k = transverse_sectional_curvature(model, x, planes=5, frame=frame)
    assert k.shape == (4, 5)
    assert float((k[full] - FISHER_RAO_CURVATURE).abs().max()) < 1e-10


def test_rank_deficient_points_follow_the_intrinsic_curvature_not_a_quarter():
    """A ReLU point with a dead unit has rank 2 < C − 1 = 3: its leaf space is a surface inside
    the sphere, with curvature 1/4 + extrinsic terms; both routes agree on it."""
    model, x = _mlp("relu", n_classes=4), _points(4, 6)
    frame = leaf_frame(model, x)
    low = int(torch.nonzero(frame.rank == 2)[0])
    seeds = point_seeds(0, 4)
    k = transverse_sectional_curvature(model, x, planes=1, seeds=seeds, frame=frame)
    u, v = random_planes(frame, 1, seeds)
    ref = intrinsic_transverse_curvature(model, x[low], u[low, 0], v[low, 0], 2)
    assert float(k[low, 0]) == pytest.approx(float(ref), rel=1e-8)
    assert abs(float(ref) - 0.25) > 1e-3


def test_transverse_curvature_matches_the_intrinsic_riemann_tensor():
    """No Gauss equation and no sphere: Christoffel symbols and the Riemann tensor of
    g(t) = Eᵀ G(x + E t) E by nested autodiff (third derivatives of the model)."""
    for activation in ("tanh", "gelu"):
        model, x = _mlp(activation, n_classes=4, seed=3), _points(2, 6, seed=4)
        frame = leaf_frame(model, x)
        seeds = point_seeds(5, 2)
        k = transverse_sectional_curvature(model, x, planes=2, seeds=seeds, frame=frame)
        u, v = random_planes(frame, 2, seeds)
        for i in range(2):
            for j in range(2):
                ref = intrinsic_transverse_curvature(model, x[i], u[i, j], v[i, j], 3)
                assert float(ref) == pytest.approx(float(k[i, j]), abs=1e-8)
                assert float(ref) == pytest.approx(0.25, abs=1e-8)


def test_transverse_curvature_on_a_cnn_and_on_any_plane():
    model = tiny_cnn(n_classes=4, activation="gelu", seed=1)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    for sampling in ("pixel", "transverse"):
        k = transverse_sectional_curvature(model, x, planes=3, seeds=[7, 8, 9], sampling=sampling)
        assert float((k - 0.25).abs().max()) < 1e-9
    # transverse planes are G-orthonormal, pixel planes orthonormal in D_x
    frame = leaf_frame(model, x)
    u, v = random_planes(frame, 3, [7, 8, 9], "transverse")
    info = DataInformation(model, x, dtype=F64)
    guu = info.quadratic(u[:, 0].reshape(3, -1))
    assert torch.allclose(guu, torch.ones(3, dtype=F64), atol=1e-9)
    u, v = random_planes(frame, 3, [7, 8, 9], "pixel")
    assert torch.allclose(u.norm(dim=-1), torch.ones(3, 3, dtype=F64))
    assert float((u * v).sum(-1).abs().max()) < 1e-12
    assert torch.allclose(frame.project_kernel(u), torch.zeros_like(u), atol=1e-12)


def test_rank_one_leaf_space_has_no_sectional_curvature():
    model, x = _mlp("tanh", n_classes=2), _points(2, 6)
    k = transverse_sectional_curvature(model, x, planes=2)
    assert bool(torch.isnan(k).all())


@pytest.mark.parametrize(
    ("activation", "scale", "tol"), [("relu", 40.0, 1e-12), ("gelu", 12.0, 1e-9)]
)
def test_saturated_points_still_give_a_quarter(activation, scale, tol):
    """Models pushed toward one-hot p (σ_{C-1}/σ_1 down to 1e-11): the pivoted log-softmax, the
    exact normal q and a G-orthogonal basis of each plane keep K at 1/4."""
    model = tiny_mlp(n_in=8, n_classes=4, hidden=8, activation=activation, seed=5)
    with torch.no_grad():
        model[-1].weight.mul_(scale)
    x = _points(6, 8, seed=6)
    frame = leaf_frame(model, x)
    ratio = frame.sigma[:, -1] / frame.sigma[:, 0]
    full = frame.rank == 3
    assert float(ratio[full].min()) < (1e-10 if activation == "relu" else 1e-4)
    k = transverse_sectional_curvature(model, x, planes=4, frame=frame)
    assert float((k[full] - 0.25).abs().max()) < tol


def test_planes_depend_on_the_point_seed_only():
    model, x = _mlp("tanh"), _points(3, 6)
    frame = leaf_frame(model, x)
    u, _ = random_planes(frame, 2, [11, 12, 13])
    u2, _ = random_planes(leaf_frame(model, x[1:2]), 2, [12])
    assert torch.allclose(u[1], u2[0])


# ------------------------------------------------------------------ integrability tensor
def test_integrability_tensor_matches_full_hessians():
    model, x = _mlp("tanh"), _points(3, 6)
    result = integrability_tensor(model, x)
    frame = leaf_frame(model, x)
    for i in range(3):
        omega, v = dense_integrability(model, x[i], 3)
        sign = torch.sign((v * frame.v[i]).sum(1))
        omega = omega * sign[:, None, None] * sign[None, :, None]
        assert torch.allclose(omega, result.tensor[i], atol=1e-12)
    assert torch.allclose(result.tensor, -result.tensor.transpose(1, 2))  # antisymmetric
    assert float(result.ratio.min()) > 1e-3  # a smooth net: brackets leave D
    inside = torch.einsum("nijd,nkd->nijk", result.tensor, frame.v)
    assert float(inside.abs().max()) < 1e-12  # values in ker G


@pytest.mark.parametrize("kind", ["linear", "relu"])
def test_integrability_tensor_vanishes_for_piecewise_linear_models(kind):
    gen = torch.Generator().manual_seed(0)
    if kind == "linear":
        model = LinearSoftmax(torch.randn(5, 7, generator=gen), torch.randn(5, generator=gen))
    else:
        model = _mlp("relu", n_in=7, n_classes=5)
    x = _points(4, 7)
    result = integrability_tensor(model, x)
    assert float(result.bracket_norm.min()) > 1e-3  # the brackets themselves are not zero
    assert float(result.ratio.max()) < 1e-12


def test_integrability_tensor_is_the_projected_bracket_test():
    """P_ker [∇p_a, ∇p_b] (the bracket test's fields) = Σ c_ak c_bl Ω(v_k, v_l)."""
    model, x = _mlp("gelu", n_classes=4), _points(2, 6)
    fields, brackets = lie_brackets(model, x)
    result = integrability_tensor(model, x)
    frame = leaf_frame(model, x)
    c = torch.einsum("nad,nkd->nak", fields, frame.v)
    rebuilt = torch.einsum("nak,nbl,nkld->nabd", c, c, result.tensor)
    a_idx, b_idx = torch.triu_indices(4, 4, offset=1)
    expected = frame.project_kernel(brackets)
    assert torch.allclose(rebuilt[:, a_idx, b_idx], expected, atol=1e-12)


# ---------------------------------------------------------------- principal curvatures
def test_principal_curvatures_match_dense_shape_operators():
    model, x = _mlp("tanh", n_in=7), _points(2, 7)
    frame = leaf_frame(model, x)
    result = leaf_principal_curvatures(model, x, normals=3, count=4, steps=10, frame=frame)
    assert result.steps == 4  # the whole kernel (7 − 3): exact
    for i in range(2):
        for k in range(3):
            dense = dense_shape_operator_eigenvalues(model, x[i], 3, frame.v[i, k])
            top = dense[dense.abs().argsort(descending=True)]
            assert torch.allclose(result.values[i, k], top, atol=1e-10)


def test_lanczos_converges_on_a_larger_kernel():
    model = tiny_mlp(n_in=40, n_classes=3, hidden=12, activation="gelu", seed=2)
    x = _points(1, 40, seed=3)
    frame = leaf_frame(model, x)
    result = leaf_principal_curvatures(model, x, normals=1, count=2, steps=30, frame=frame)
    dense = dense_shape_operator_eigenvalues(model, x[0], 2, frame.v[0, 0])
    top = dense[dense.abs().argsort(descending=True)][:2]
    assert torch.allclose(result.values[0, 0], top, atol=1e-8)
    assert float(result.residuals.max()) < 1e-6


def test_second_fundamental_form_matches_finite_differences_on_the_level_set():
    """⟨II(w, w), v_k⟩ = ⟨S_k w, w⟩ = −wᵀ H_k w against the acceleration of a curve on p = const."""
    model, x = _mlp("tanh"), _points(1, 6)
    frame = leaf_frame(model, x)
    q0, a, hess = dense_derivatives(model, x[0])
    w = frame.project_kernel(torch.randn(1, 6, generator=torch.Generator().manual_seed(4)).to(F64))
    w = w[0] / w[0].norm()
    second = torch.einsum("cab,a,b->c", hess, w, w)
    ii = -torch.linalg.pinv(a) @ second  # II(w, w) = −A⁺ D²q(w, w)
    fd = level_set_acceleration(model, x[0], w, 3, h=1e-3)
    assert torch.allclose(fd, ii, atol=1e-5)
    in_d = frame.v[0].T @ (frame.v[0] @ ii)
    assert float((ii - in_d).abs().max()) < 1e-12  # II takes values in D_x
    coef = frame.coefficients()[0]
    for k in range(3):
        hk = torch.einsum("c,cab->ab", coef[k], hess)
        assert float(ii @ frame.v[0, k]) == pytest.approx(float(-w @ hk @ w), abs=1e-12)


def test_level_sets_of_a_radial_model_are_spheres():
    model = Radial()
    x = _points(2, 5) + 0.5
    result = leaf_principal_curvatures(model, x, normals=1, count=4, steps=10)
    radius = x.norm(dim=1)
    expected = (-1 / radius)[:, None].expand(2, 4)
    assert torch.allclose(result.values[:, 0], expected, atol=1e-10)
    # the leaf space is one-dimensional: no sectional curvature, no brackets outside D
    assert bool(torch.isnan(transverse_sectional_curvature(model, x)).all())
    assert float(integrability_tensor(model, x).norm.max()) == 0.0
    w = torch.zeros(5, dtype=F64)
    w[0], w[1] = x[0, 1], -x[0, 0]  # tangent to the sphere |z| = |x|
    fd = level_set_acceleration(model, x[0], w / w.norm(), 1, h=1e-3)
    assert float(fd.norm()) == pytest.approx(1 / float(radius[0]), rel=1e-5)  # |II(w,w)| = 1/R


def test_leaves_of_a_linear_softmax_model_are_flat():
    gen = torch.Generator().manual_seed(1)
    model = LinearSoftmax(torch.randn(4, 9, generator=gen), torch.randn(4, generator=gen))
    result = leaf_principal_curvatures(model, _points(2, 9), normals=3, count=3, steps=8)
    assert float(result.values.abs().max()) < 1e-12


def test_leaf_geometry_bundles_the_three_quantities():
    model, x = _mlp("gelu"), _points(3, 6)
    geo = leaf_geometry(model, x, planes=2, normals=2, count=2, steps=3, seeds=[1, 2, 3])
    assert geo.sectional_curvature.shape == (3, 2)
    assert geo.integrability is not None and geo.integrability.norm.shape == (3,)
    assert geo.principal is not None and geo.principal.values.shape == (3, 2, 2)
    assert math.isfinite(float(geo.principal.values.abs().max()))
