"""Linear regions of piecewise-linear toys: patterns, D_x constant inside, principal angles."""

import math

import pytest
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.foliation.paths import PathConfig, horizontal_paths
from leafscope.foliation.regions import (
    activation_pattern,
    distribution_basis,
    orthonormal_rows,
    pattern_changes,
    principal_angles,
    span_fraction,
)
from leafscope.testing import tiny_mlp

D64 = torch.float64


def orthant_model() -> nn.Module:
    """x (3,) → ReLU(x) → W2 (3 classes): the regions are the 8 orthants, J = W2·diag(x > 0)."""
    lin = nn.Linear(3, 3, bias=False)
    out = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(3))
        out.weight.copy_(torch.tensor([[1.0, 2.0, 0.5], [-1.0, 0.5, 1.0], [0.3, -0.7, 2.0]]))
    return nn.Sequential(lin, nn.ReLU(), out).double()


def test_pattern_is_the_orthant_and_counts_changes_along_a_line():
    model = orthant_model()
    x = torch.tensor([[1.0, -2.0, 3.0], [-0.5, 0.1, -0.2]], dtype=D64)
    assert activation_pattern(model, x).tolist() == [[1, 0, 1], [0, 1, 0]]
    # the segment (−1, 1, −1) → (1, 1, 1) crosses x1 = 0 and x3 = 0 at different times
    t = torch.linspace(0, 1, 41, dtype=D64)[:, None]
    line = torch.tensor([-1.0, 1.0, -0.5], dtype=D64) * (1 - t) + torch.tensor([1.0, 1.0, 1.5]) * t
    assert pattern_changes(activation_pattern(model, line)) == (2, 3)


def test_pattern_reads_inplace_relu_before_it_acts_and_includes_pooling():
    model = nn.Sequential(nn.ReLU(inplace=True), nn.MaxPool1d(2), nn.Flatten()).double()
    x = torch.tensor([[[-1.0, 2.0, 3.0, 1.0]], [[4.0, 2.0, 3.0, 1.0]]], dtype=D64)
    pats = activation_pattern(model, x.clone())
    assert pats[0].tolist() == [0, 1, 1, 1, 1, 2]  # relu signs, then argmax 1 (of 0,1), 2 (of 2,3)
    assert pats[1].tolist() == [1, 1, 1, 1, 0, 2]  # the first window's argmax moved to 0
    no_pool = activation_pattern(model, x.clone(), pooling=False)
    assert no_pool.shape == (2, 4)


def test_pattern_refuses_smooth_models():
    with pytest.raises(InputError, match="no nn.ReLU"):
        activation_pattern(tiny_mlp(activation="tanh"), torch.rand(2, 12))


def test_distribution_is_constant_inside_a_region_and_known_across():
    model = orthant_model()
    w2 = model[2].weight.detach()
    x = torch.tensor([[0.7, 0.4, 0.9]], dtype=D64)
    d0 = distribution_basis(model, x)[0]
    expect = orthonormal_rows(w2[1:] - w2[:1])  # J = W2 in the positive orthant
    assert principal_angles(d0, expect).max() < 1e-14
    d1 = distribution_basis(model, x + torch.tensor([[0.1, -0.2, 0.3]], dtype=D64))[0]
    assert principal_angles(d0, d1).max() < 1e-14  # same orthant, different probabilities
    d2 = distribution_basis(model, torch.tensor([[0.7, 0.4, -0.9]], dtype=D64))[0]
    masked = w2 * torch.tensor([1.0, 1.0, 0.0], dtype=D64)  # the third input switched off
    assert d2[:, 2].abs().max() < 1e-15  # D lies in the x1-x2 plane there
    assert principal_angles(d2, masked[1:] - masked[:1]).max() < 1e-14
    assert principal_angles(d0, d2).max() > 0.1


def test_principal_angles_are_accurate_near_zero_and_right_angles():
    for theta in (0.0, 1e-9, 1e-4, 0.3, math.pi / 2):
        a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=D64)
        b = torch.tensor([[math.cos(theta), math.sin(theta), 0.0], [0.0, 0.0, 2.0]], dtype=D64)
        ang = principal_angles(a, b)
        assert ang.shape == (2,)
        assert abs(float(ang[0])) < 1e-15  # the shared z axis
        assert abs(float(ang[1]) - theta) < 1e-15 + 1e-12 * theta
    # subspaces of different dimensions: min(rank) angles
    assert principal_angles(torch.eye(3, dtype=D64)[:1], torch.eye(3, dtype=D64)).tolist() == [0.0]


def test_span_fraction_known_values_and_errors():
    e = torch.eye(3, dtype=D64)
    v = torch.tensor([1.0, 1.0, 1.0], dtype=D64)
    assert span_fraction([e[:1], e[1:2]], v) == pytest.approx(math.sqrt(2 / 3), abs=1e-15)
    assert span_fraction([e[:1], e[:1] * 3], v) == pytest.approx(math.sqrt(1 / 3), abs=1e-15)
    with pytest.raises(InputError, match="zero"):
        span_fraction([e], torch.zeros(3, dtype=D64))
    with pytest.raises(InputError, match="rows of length 4"):
        span_fraction([e], torch.ones(4, dtype=D64))


def test_greedy_path_cannot_beat_the_span_of_the_crossed_distributions():
    """Without the box, every greedy step lies in the D of its region: x_T − start is in the
    union of the crossed D's, so ‖end − x_T‖ ≥ ‖(I − P_union)(end − start)‖."""
    model = tiny_mlp(n_in=10, n_classes=3, hidden=6, activation="relu", seed=1).double()
    gen = torch.Generator().manual_seed(0)
    start, end = torch.randn(3, 10, generator=gen, dtype=D64), torch.randn(3, 10, generator=gen)
    cfg = PathConfig(max_steps=300, box=None, dtype=D64, threshold=0.0)
    res = horizontal_paths(model, start, end.double(), cfg)
    crossed = []
    for i, pts in enumerate(res.points):
        pats = activation_pattern(model, pts)
        bases = distribution_basis(model, pts)
        crossed.append(pattern_changes(pats)[0])
        moved = pts[-1] - pts[0]
        assert span_fraction(bases, moved) == pytest.approx(1.0, abs=1e-9)
        frac = span_fraction(bases, end[i].double() - start[i])
        assert res.relative_distance[i] >= math.sqrt(1 - frac**2) - 1e-9
    assert max(crossed) >= 1  # the toy paths do cross regions
