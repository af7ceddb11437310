"""λ-geodesics of the penalised metric and their tracked horizontal paths: the vertical
projector against the null space of the log-softmax Jacobian, the frozen solve against a dense
KKT system, a constant distribution (straight line, energy linear in λ, the vertical gap kept
exactly) and a contact distribution (the greedy path cannot move, the geodesic joins the
points)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from leafscope.errors import InputError
from leafscope.foliation import PathConfig, horizontal_paths
from leafscope.foliation.geodesics import (
    GeodesicConfig,
    curve_energy,
    frozen_geodesic_steps,
    geodesic_paths,
    leaf_bases,
    newton_move,
    vertical_part,
)
from leafscope.testing import LinearSoftmax, tiny_mlp


class Contact(nn.Module):
    """Logits ``(0, x² + y², x cos(z/2) − y sin(z/2))`` on R^3: D = span of their gradients is
    the contact plane field ``ker(y/2 dx − x/2 dy + dz)`` (both gradients are orthogonal to
    ``(y/2, −x/2, 1)``), bracket-generating, so every two points are joined horizontally."""

    def forward(self, x):
        a, b, c = x[:, 0], x[:, 1], x[:, 2]
        return torch.stack(
            [torch.zeros_like(a), a * a + b * b, a * torch.cos(c / 2) - b * torch.sin(c / 2)], 1
        )


def null_space_part(model, x, v):
    """Independent route: v minus its projection on the row space (rank C − 1) of the
    log-softmax Jacobian, from a dense autograd Jacobian and an SVD."""
    f = lambda z: torch.log_softmax(model(z[None]), 1)[0]  # noqa: E731
    jac = jacobian(f, x)
    _, _, vh = torch.linalg.svd(jac, full_matrices=False)
    basis = vh[: jac.shape[0] - 1]
    return v - basis.T @ (basis @ v)


def test_vertical_part_is_the_null_space_part_of_the_log_softmax_jacobian():
    model = tiny_mlp(n_in=7, n_classes=4, activation="tanh").double().eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    v = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    got = vertical_part(model, x, v, input_shape=(7,))
    for i in range(5):
        want = null_space_part(model, x[i], v[i])
        assert torch.allclose(got[i], want, atol=1e-12, rtol=0)
    # and the bases span D: P_K of a basis vector is 0, each basis is orthonormal
    bases = leaf_bases(model, x, input_shape=(7,))
    assert bases.shape == (5, 3, 7)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(bases @ bases.transpose(1, 2), eye.expand(5, 3, 3), atol=1e-12)
    assert vertical_part(model, x, bases[:, 0], input_shape=(7,)).norm() < 1e-12


def test_frozen_solve_is_the_minimiser_of_the_constrained_quadratic():
    """Against the dense KKT system of min Σ Δ_kᵀ A_k Δ_k subject to Σ Δ_k = gap."""
    n, r, d, lam = 5, 2, 6, 7.0
    gen = torch.Generator().manual_seed(0)
    bases = torch.linalg.qr(torch.randn(n, d, r, generator=gen, dtype=torch.float64)).Q
    bases = bases.transpose(1, 2)  # (n, r, d), orthonormal rows
    gap = torch.randn(d, generator=gen, dtype=torch.float64)
    steps = frozen_geodesic_steps(bases, gap, lam, 1e-13)
    blocks = []
    for k in range(n):
        pd = (bases[k].T @ bases[k]).numpy()
        blocks.append(pd + lam * (np.eye(d) - pd))
    big = np.zeros((n * d + d, n * d + d))
    for k in range(n):
        big[k * d : (k + 1) * d, k * d : (k + 1) * d] = 2 * blocks[k]
        big[k * d : (k + 1) * d, n * d :] = np.eye(d)
        big[n * d :, k * d : (k + 1) * d] = np.eye(d)
    rhs = np.concatenate([np.zeros(n * d), gap.numpy()])
    want = np.linalg.solve(big, rhs)[: n * d].reshape(n, d)
    np.testing.assert_allclose(steps.numpy(), want, atol=1e-10)
    np.testing.assert_allclose(steps.sum(0).numpy(), gap.numpy(), atol=1e-10)


def test_newton_move_with_the_frozen_gradient_is_the_move_to_the_frozen_geodesic():
    """With the gradient of the frozen energy, ``2n (A_{j−1} Δ_{j−1} − A_j Δ_j)``, the
    Newton-like move lands on the frozen geodesic; with any gradient it is a descent
    direction (gᵀm < 0: the frozen Hessian is positive definite)."""
    n, r, d, lam = 6, 2, 5, 30.0
    gen = torch.Generator().manual_seed(4)
    bases = torch.linalg.qr(torch.randn(n, d, r, generator=gen, dtype=torch.float64)).Q
    bases = bases.transpose(1, 2)
    curve = torch.randn(n + 1, d, generator=gen, dtype=torch.float64)
    steps = curve[1:] - curve[:-1]
    horiz = torch.einsum("krd,kr->kd", bases, torch.einsum("krd,kd->kr", bases, steps))
    momentum = lam * steps - (lam - 1) * horiz
    frozen = 2 * n * (momentum[:-1] - momentum[1:])
    move = newton_move(bases, frozen, lam, 1e-13)
    geodesic = frozen_geodesic_steps(bases, curve[-1] - curve[0], lam, 1e-13)
    target = curve[0] + torch.cat([torch.zeros(1, d, dtype=torch.float64), geodesic.cumsum(0)])
    assert torch.allclose(curve + move, target, atol=1e-9)
    other = torch.randn(n - 1, d, generator=gen, dtype=torch.float64)
    assert float((other * newton_move(bases, other, lam, 1e-13)[1:-1]).sum()) < 0


def test_energy_gradient_with_the_metric_derivative_matches_finite_differences():
    """The gradient the Newton-like move uses differentiates the projector (the derivative of
    the metric): central differences of the energy on a smooth model agree."""
    from torch.func import grad

    model = tiny_mlp(n_in=5, n_classes=3, activation="tanh").double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(5)
    curve = torch.randn(6, 5, generator=gen, dtype=torch.float64)

    def energy(inner):
        full = torch.cat([curve[:1], inner, curve[-1:]])
        return curve_energy(model, full, 50.0, input_shape=(5,))[0]

    inner = curve[1:-1].clone()
    g = grad(energy)(inner)
    u = torch.randn(inner.shape, generator=gen, dtype=torch.float64)
    h = 1e-5
    with torch.no_grad():
        fd = (energy(inner + h * u) - energy(inner - h * u)) / (2 * h)
    assert float((g * u).sum()) == pytest.approx(float(fd), rel=1e-6)
    # and the derivative of the metric matters here: D held fixed gives another number
    bases = leaf_bases(model, 0.5 * (curve[1:] + curve[:-1]), input_shape=(5,))
    steps = curve[1:] - curve[:-1]
    horiz = torch.einsum("krd,kr->kd", bases, torch.einsum("krd,kd->kr", bases, steps))
    momentum = 50.0 * steps - 49.0 * horiz
    frozen = 2 * 5 * (momentum[:-1] - momentum[1:])
    assert abs(float((frozen * u).sum()) - float(fd)) > 1e-3 * abs(float(fd))


def test_constant_distribution_straight_line_linear_energy_and_the_vertical_gap_kept():
    """A linear classifier has one D everywhere: the λ-geodesic is the segment, its relative
    energy is 1 + (λ − 1) f² (f = |P_K gap| / |gap|), and no horizontal path can change the
    vertical part of the gap: the tracked path ends exactly |P_K gap| from the end."""
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    model = LinearSoftmax(weight).double()
    x0 = torch.randn(1, 6, generator=gen, dtype=torch.float64)
    x1 = x0 + 2.0 * torch.randn(1, 6, generator=gen, dtype=torch.float64)
    gap = (x1 - x0)[0]
    with torch.no_grad():
        vertical = vertical_part(model, x0, gap[None], input_shape=(6,))[0]
    f = float(vertical.norm() / gap.norm())
    assert 0.2 < f < 0.99  # the gap has both parts
    config = GeodesicConfig(
        segments=16,
        penalties=(1.0, 10.0, 1000.0),
        relaxation=1.0,
        box=None,
        track_step=0.01,
        threshold=0.0,
    )
    result = geodesic_paths(model, x0, x1, config)
    curve = result.curves[0]
    t = torch.linspace(0, 1, 17, dtype=torch.float64)[:, None]
    assert torch.allclose(curve, x0 + t * gap, atol=1e-10)  # the jitter is undone
    for stage in result.stages[0]:
        assert stage["energy"] == pytest.approx(1 + (stage["penalty"] - 1) * f**2, rel=1e-8)
        assert stage["vertical_length"] == pytest.approx(f, rel=1e-8)
    final = result.tracked.final_distance[0]
    assert final == pytest.approx(float(vertical.norm()), rel=1e-6)
    assert not result.tracked.reached[0]


def test_contact_distribution_the_greedy_path_stalls_the_geodesic_joins():
    """At (0, 1, 0) the end lies along (1/2, 0, 1), orthogonal to D: the greedy path cannot
    move. The λ-geodesics' vertical length falls about 10× per 10× λ (the curve lengthens
    toward the sub-Riemannian distance) and their tracked path reaches the end."""
    model = Contact()
    x0 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    direction = torch.tensor([[0.5, 0.0, 1.0]], dtype=torch.float64)
    x1 = x0 + direction / direction.norm()
    greedy = horizontal_paths(
        model,
        x0,
        x1,
        PathConfig(step=0.01, threshold=0.01, max_steps=300, box=None, dtype=torch.float64),
    )
    assert greedy.tangent_fraction[0][0] < 1e-12
    assert greedy.relative_distance[0] > 0.99
    config = GeodesicConfig(
        segments=32,
        penalties=(10.0, 100.0, 1000.0),
        iterations=200,
        relaxation=0.5,
        box=None,
        track_step=0.01,
        threshold=0.02,
        jitter=0.1,
    )
    result = geodesic_paths(model, x0, x1, config)
    vertical = [s["vertical_length"] for s in result.stages[0]]
    lengths = [s["length"] for s in result.stages[0]]
    assert all(b < a / 5 for a, b in zip(vertical, vertical[1:], strict=False))
    assert all(a <= b for a, b in zip(lengths, lengths[1:], strict=False))
    assert result.tracked.reached[0]
    assert result.tracked.relative_distance[0] < 0.02
    # the tracked path is horizontal: every step lies in D at the point it leaves
    pts = result.tracked.points[0].reshape(-1, 3)
    steps = pts[1:] - pts[:-1]
    vert = vertical_part(model, pts[:-1], steps, input_shape=(3,))
    assert float(vert.norm(dim=1).max()) < 1e-10


def test_curve_energy_matches_its_definition():
    model = tiny_mlp(n_in=5, n_classes=3, activation="tanh").double().eval()
    gen = torch.Generator().manual_seed(2)
    curve = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        energy, vert = curve_energy(model, curve, 4.0, input_shape=(5,))
    want, norms = 0.0, []
    for k in range(6):
        step = curve[k + 1] - curve[k]
        v = null_space_part(model, 0.5 * (curve[k] + curve[k + 1]), step)
        norms.append(float(v.norm()))
        want += float(step @ step) + 3.0 * float(v @ v)
    assert float(energy) == pytest.approx(6 * want, rel=1e-10)
    assert vert.tolist() == pytest.approx(norms, rel=1e-10)


@pytest.mark.parametrize(
    "field, value",
    [
        ("segments", 1),
        ("penalties", (100.0, 10.0)),
        ("penalties", (0.5,)),
        ("penalties", ()),
        ("relaxation", 0.0),
        ("track_step", -1.0),
        ("iterations", -1),
    ],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(InputError, match=field.rstrip("s") if field == "penalties" else field):
        GeodesicConfig(**{field: value}).check()


def test_start_equal_to_end_is_refused():
    model = tiny_mlp(n_in=4, n_classes=3).double()
    x = torch.zeros(1, 4, dtype=torch.float64)
    with pytest.raises(InputError, match="start equals end"):
        geodesic_paths(model, x, x.clone(), GeodesicConfig(box=None))
    assert math.isfinite(GeodesicConfig().check().penalties[0])


def test_the_tracked_path_stops_at_its_step_limit():
    model = tiny_mlp(n_in=6, n_classes=3, activation="tanh").double().eval()
    gen = torch.Generator().manual_seed(6)
    x0 = torch.randn(1, 6, generator=gen, dtype=torch.float64)
    x1 = x0 + 3 * torch.randn(1, 6, generator=gen, dtype=torch.float64)
    config = GeodesicConfig(
        segments=8, penalties=(10.0,), iterations=2, box=None, track_step=0.05,
        track_max_steps=3, threshold=0.0,
    )  # fmt: skip
    tracked = geodesic_paths(model, x0, x1, config).tracked
    assert len(tracked.distance[0]) == 4 and tracked.stop_reason == ["max_steps"]
    with pytest.raises(InputError, match="track_max_steps"):
        GeodesicConfig(track_max_steps=-1).check()
