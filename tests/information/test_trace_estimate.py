"""Hutchinson estimate of tr G, one vjp per probe: unbiased (tested statistically against the
exact trace over seeds), its standard error honest, reproducible per point."""

from __future__ import annotations

import math

import pytest
import torch

from leafscope.errors import InputError
from leafscope.information import DataInformation, trace_estimate
from leafscope.testing import tiny_cnn, tiny_mlp


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = tiny_mlp(n_in=20, n_classes=8)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # spread the logits: K = AAᵀ far from diagonal, a real variance
    x = torch.rand(5, 20, dtype=torch.float64)
    G = DataInformation(model, x, dtype=torch.float64)
    return model, x, G


def test_unbiased_over_seeds(setup):
    model, x, G = setup
    exact = G.trace()
    estimates = torch.stack(
        [trace_estimate(model, x, probes=16, seed=s, dtype=torch.float64).estimate
         for s in range(200)]
    )  # fmt: skip
    mean = estimates.mean(0)
    se_of_mean = estimates.std(0) / math.sqrt(estimates.shape[0])
    z = (mean - exact).abs() / se_of_mean
    assert bool((z < 4).all()), z  # 200 seeds: unbiased within 4 standard errors


def test_standard_error_matches_the_spread_over_seeds_and_the_rademacher_variance(setup):
    model, x, G = setup
    probes = 32
    runs = [
        trace_estimate(model, x, probes=probes, seed=s, dtype=torch.float64) for s in range(100)
    ]
    spread = torch.stack([r.estimate for r in runs]).std(0)
    reported = torch.stack([r.stderr for r in runs]).mean(0)
    assert torch.allclose(reported, spread, rtol=0.35)
    # the variance of one Rademacher value is 2 (‖K‖_F² − Σ K_ii²), K = A Aᵀ
    K = G.factor @ G.factor.transpose(1, 2)
    variance = 2 * (K.pow(2).sum((1, 2)) - K.diagonal(dim1=1, dim2=2).pow(2).sum(1))
    assert torch.allclose(spread, (variance / probes).sqrt(), rtol=0.35)


def test_within_a_few_standard_errors_and_reproducible(setup):
    model, x, G = setup
    est = trace_estimate(model, x, probes=64, seed=3, dtype=torch.float64)
    assert bool(((est.estimate - G.trace()).abs() < 5 * est.stderr).all())
    again = trace_estimate(model, x, probes=64, seed=3, dtype=torch.float64, probe_chunk=5)
    assert torch.equal(est.values, again.values)  # chunking changes nothing
    seeds = [11, 12, 13, 14, 15]
    alone = trace_estimate(model, x[2:3], probes=8, point_seeds=seeds[2:3], dtype=torch.float64)
    batch = trace_estimate(model, x, probes=8, point_seeds=seeds, dtype=torch.float64)
    assert torch.allclose(alone.values[0], batch.values[2])  # a point's probes are its own
    gauss = trace_estimate(model, x, probes=64, distribution="gaussian", dtype=torch.float64)
    assert bool(((gauss.estimate - G.trace()).abs() < 5 * gauss.stderr).all())


def test_images_and_refusals():
    torch.manual_seed(0)
    model = tiny_cnn()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    exact = DataInformation(model, x, dtype=torch.float64).trace()
    est = trace_estimate(model, x, probes=256, dtype=torch.float64)
    assert bool(((est.estimate - exact).abs() < 5 * est.stderr).all())
    assert bool(torch.isinf(trace_estimate(model, x, probes=1, dtype=torch.float64).stderr).all())
    with pytest.raises(InputError, match="rademacher or gaussian"):
        trace_estimate(model, x, distribution="uniform")
    with pytest.raises(InputError, match="point_seeds"):
        trace_estimate(model, x, point_seeds=[1])
