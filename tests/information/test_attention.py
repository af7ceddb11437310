"""Attention inside Jacobian products: the fused and the math SDPA routes give the same G, vmap's
fallback warning is not shown, and forward-mode AD (top-k) takes the math route, the only one
with jvp on the CPU. Timings: ``python bench/bench_attention.py --cpu-time``."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.information import (
    DataInformation,
    attention_route,
    input_jacobian,
    top_eigenvalues,
    trace_estimate,
)


class TinyAttention(nn.Module):
    """Tokens (N, L, E) → one self-attention layer (F.scaled_dot_product_attention) → mean →
    C logits."""

    def __init__(self, dim: int = 8, classes: int = 5):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        out = nn.functional.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])
        return self.head(torch.tanh(out[:, 0] + x).mean(dim=1))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyAttention().double().eval()


def test_routes_agree_and_the_fallback_warning_is_not_shown(model):
    x = torch.rand(3, 6, 8, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, fused = input_jacobian(model, x, attention="fused")
        _, math = input_jacobian(model, x, attention="math")
    assert torch.allclose(fused, math, atol=1e-13)
    assert not [w for w in caught if "performance drop" in str(w.message)]
    rows = torch.stack(
        [torch.autograd.functional.jacobian(lambda z: model(z[None])[0], xi) for xi in x]
    )
    assert torch.allclose(fused, rows.flatten(2), atol=1e-13)


def test_top_k_runs_on_attention_through_the_math_route(model):
    x = torch.rand(2, 6, 8, dtype=torch.float64)
    exact = DataInformation(model, x).eigenvalues()[:, :3]
    top = top_eigenvalues(model, x, 3, tol=1e-10)  # jvp: no forward AD in the fused CPU kernel
    assert torch.allclose(top.eigenvalues, exact, rtol=1e-8)
    est = trace_estimate(model, x, probes=512)
    trace = DataInformation(model, x).trace()
    assert bool(((est.estimate - trace).abs() < 5 * est.stderr).all())


def test_auto_takes_the_fused_kernels_on_the_cpu_and_math_for_forward_ad():
    enabled = torch.backends.cuda.flash_sdp_enabled
    with attention_route("auto", "cpu"):
        assert enabled()
    with attention_route("auto", "cpu", forward_ad=True):
        assert not enabled()
    with attention_route("math"):
        assert not enabled()
    assert enabled()
    with pytest.raises(InputError, match="unknown attention route"):
        with attention_route("flash"):
            pass
