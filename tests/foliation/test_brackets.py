"""Lie brackets vs finite differences; involutivity of ReLU vs GeLU; the Fisher distribution."""

import pytest
import torch

from leafscope.errors import InputError
from leafscope.foliation import (
    bracket_pairs,
    fisher_involutivity,
    involutivity,
    lie_brackets,
    parameter_lie_brackets,
)
from leafscope.information import FisherInformation
from leafscope.testing import LinearSoftmax, tiny_cnn, tiny_mlp


def prob_field(model, z, a):
    """X_a(z) = ∇ p_a by plain autograd (independent of torch.func)."""
    z = z.clone().requires_grad_(True)
    p = torch.softmax(model(z[None]), dim=1)[0, a]
    return torch.autograd.grad(p, z)[0]


@pytest.mark.parametrize("activation", ["tanh", "gelu", "sigmoid"])
def test_brackets_match_central_finite_differences(activation):
    torch.manual_seed(0)
    model = tiny_mlp(n_in=6, n_classes=4, hidden=8, activation=activation).double()
    x = torch.randn(2, 6, dtype=torch.float64)
    fields, brackets = lie_brackets(model, x)
    eps = 1e-5
    for i in range(2):
        for k, (a, b) in enumerate(bracket_pairs(4)):
            xa, xb = prob_field(model, x[i], a), prob_field(model, x[i], b)
            assert torch.allclose(fields[i, a], xa, atol=1e-12)
            dxb_xa = prob_field(model, x[i] + eps * xa, b) - prob_field(model, x[i] - eps * xa, b)
            dxa_xb = prob_field(model, x[i] + eps * xb, a) - prob_field(model, x[i] - eps * xb, a)
            fd = (dxb_xa - dxa_xb) / (2 * eps)
            scale = brackets[i, k].abs().max()
            assert scale > 1e-6
            assert (fd - brackets[i, k]).abs().max() < 1e-6 * max(1.0, float(scale))


def test_fields_sum_to_zero_and_count_pairs():
    model = tiny_mlp(n_in=6, n_classes=4, hidden=8)
    fields, brackets = lie_brackets(model, torch.randn(3, 6))
    assert fields.shape == (3, 4, 6) and brackets.shape == (3, 6, 6)
    assert fields.sum(dim=1).abs().max() < 1e-12


def test_relu_distribution_is_involutive_and_gelu_is_not():
    torch.manual_seed(1)
    x = torch.randn(6, 12)
    relu = involutivity(tiny_mlp(n_in=12, n_classes=4, activation="relu", seed=3), x)
    gelu = involutivity(tiny_mlp(n_in=12, n_classes=4, activation="gelu", seed=3), x)
    assert relu.dim_with_brackets == relu.dim_distribution
    assert max(relu.dim_distribution) == 3
    assert gelu.dim_distribution == [3] * 6
    assert all(b > d for b, d in zip(gelu.dim_with_brackets, gelu.dim_distribution, strict=True))
    assert gelu.ceiling == 6 and gelu.mean_dim_with_brackets > 5
    # ReLU: a large spectral gap after dim D; GeLU: the gap (if any) sits at the ceiling
    assert all(
        k == d and g > 5 for (k, g), d in zip(relu.largest_gap, relu.dim_distribution, strict=True)
    )
    js = relu.to_json()
    assert js["mean_dim_distribution"] == js["mean_dim_with_brackets"]
    assert len(js["points"][0]["singular_values"]) == 4 + 6


def test_relu_cnn_with_maxpool_is_involutive():
    torch.manual_seed(2)
    res = involutivity(tiny_cnn(n_classes=4, activation="relu"), torch.rand(3, 1, 8, 8))
    assert res.dim_with_brackets == res.dim_distribution == [3, 3, 3]


def test_linear_softmax_is_involutive():
    torch.manual_seed(3)
    model = LinearSoftmax(torch.randn(5, 9), torch.randn(5))
    res = involutivity(model, torch.randn(4, 9))
    assert res.dim_distribution == res.dim_with_brackets == [4] * 4


def test_fisher_fields_span_the_image_of_F_and_are_not_involutive():
    torch.manual_seed(4)
    model = tiny_mlp(n_in=5, n_classes=3, hidden=6, activation="relu").double()
    x = torch.randn(3, 5, dtype=torch.float64)
    fields, _ = parameter_lie_brackets(model, x)
    F = FisherInformation(model, x, dtype=torch.float64)
    rank_f = F.rank(1e-8).rank
    rank_fields = torch.linalg.matrix_rank(fields, rtol=1e-8)
    assert torch.equal(rank_f, rank_fields)
    res = fisher_involutivity(model, x)
    assert all(b > d for b, d in zip(res.dim_with_brackets, res.dim_distribution, strict=True))
    assert res.space == "parameter"


def test_bad_arguments():
    model = tiny_mlp(n_in=6, n_classes=3)
    with pytest.raises(InputError, match="rtol"):
        involutivity(model, torch.randn(2, 6), rtol=2.0)
    with pytest.raises(InputError, match="max_parameters"):
        fisher_involutivity(model, torch.randn(2, 6), max_parameters=10)
    with pytest.raises(InputError, match="unknown parameter"):
        parameter_lie_brackets(model, torch.randn(2, 6), parameters=["nope"])
    with pytest.raises(InputError, match="batch"):
        involutivity(model, torch.randn(6))
