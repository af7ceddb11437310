"""Low-precision G: forward and Jacobian in bfloat16 / float16, the factor, its Gram and
eigenproblem in float32, p from a float32 forward. The error of each route against float64 is
stated here on the zoo's LeNet-5 and on a tiny Hugging Face ViT (logits spread so that p is
peaked, as for a trained model); measured values (max over 8 points, seed 0) in comments, the
bounds about 2-3x above them. ``docs/foundation.md`` has the table of a trained LeNet-5."""

from __future__ import annotations

import os

import pytest
import torch

from leafscope.dtypes import COMPUTE_DTYPES, accumulation_dtype, dtype_from_name
from leafscope.errors import InputError
from leafscope.information import (
    DataInformation,
    point_spectra,
    top_eigenvalues,
    trace_estimate,
)
from leafscope.models import build_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LOW = (torch.bfloat16, torch.float16)


def zoo_lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("lenet").eval()
    with torch.no_grad():
        model.fc3.weight.mul_(20)  # spread the logits (median max p 0.2 at these points)
    return model


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    pytest.importorskip("transformers", reason="needs transformers: pip install 'leafscope[hf]'")
    from leafscope.models import ModelSpec, load_model
    from leafscope.testing.hub import save_tiny_vit

    folder = save_tiny_vit(tmp_path_factory.mktemp("vit") / "vit")
    model = load_model(ModelSpec(checkpoint=f"hf:{folder}"))
    with torch.no_grad():
        model.classifier.weight.mul_(30)  # median max p 0.63
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()).abs() / b.double().abs()).max())


#: route -> dtype -> bound on the largest relative error of λ_1..λ_3 (and of the trace).
BOUNDS = {
    "lenet": {torch.bfloat16: 0.1, torch.float16: 0.05, torch.float32: 1e-5},
    # measured: bf16 3.8e-2 (trace 1.5e-2), fp16 1.8e-2 (trace 2.1e-3), fp32 1.5e-6
    "vit": {torch.bfloat16: 0.03, torch.float16: 0.004, torch.float32: 1e-5},
    # measured: bf16 1.1e-2 (trace 3.1e-3), fp16 1.1e-3 (trace 8.6e-4), fp32 1.5e-6
}


def _check_routes(model, x, bounds) -> None:
    ref = point_spectra(model, x, dtype=torch.float64)
    top_ref = ref.eigenvalues[:, :3]
    for dtype, bound in bounds.items():
        got = point_spectra(model, x, dtype=dtype)
        assert got.compute_dtype == dtype and got.accumulation_dtype == torch.float32
        assert _rel(got.eigenvalues[:, :3], top_ref) < bound, dtype
        assert _rel(got.trace, ref.trace) < bound, dtype
        top = top_eigenvalues(model, x, 3, dtype=dtype, tol=1e-3)
        assert top.eigenvalues.dtype == torch.float32  # the Lanczos arithmetic
        assert _rel(top.eigenvalues, top_ref) < bound, dtype


def test_low_precision_routes_on_the_zoo_lenet():
    torch.manual_seed(1)
    _check_routes(zoo_lenet(), torch.rand(8, 1, 28, 28), BOUNDS["lenet"])


def test_low_precision_routes_on_a_tiny_vit(vit):
    torch.manual_seed(1)
    _check_routes(vit, torch.rand(8, 3, 32, 32), BOUNDS["vit"])


@pytest.mark.parametrize("dtype", LOW)
def test_the_factor_is_float32_and_p_comes_from_a_float32_forward(dtype):
    model = zoo_lenet()
    x = torch.rand(3, 1, 28, 28)
    G = DataInformation(model, x, dtype=dtype)
    assert G.factor.dtype == torch.float32 and G.compute_dtype == dtype
    assert G.logits.dtype == dtype  # the Jacobian's own pass
    with torch.no_grad():
        p32 = torch.softmax(model(x), dim=1)
    assert torch.allclose(G.probs, p32, atol=1e-6)
    low = torch.softmax(G.logits.float(), dim=1)
    assert float((low - p32).abs().max()) > 1e-5  # what rounded logits would have given
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched


def test_low_precision_rank_tolerance_follows_the_compute_dtype():
    model = zoo_lenet()
    x = torch.rand(2, 1, 28, 28)
    info = DataInformation(model, x, dtype=torch.bfloat16).rank()
    s1 = info.eigenvalues[:, 0]
    eps = torch.finfo(torch.bfloat16).eps
    assert torch.allclose(info.tolerance, (4 * eps) ** 2 * s1)
    assert bool((info.rank <= 9).all())


def test_hutchinson_in_bfloat16_is_within_its_standard_errors_of_the_float64_trace():
    model = zoo_lenet()
    x = torch.rand(4, 1, 28, 28)
    exact = DataInformation(model, x, dtype=torch.float64).trace()
    est = trace_estimate(model, x, probes=400, dtype=torch.bfloat16)
    z = (est.estimate - exact).abs() / est.stderr
    assert bool((z < 5).all()), z  # its bias (rounding, ~1e-2) is below the noise here


def test_dtype_names_and_refusals():
    assert set(COMPUTE_DTYPES) == {"bfloat16", "float16", "float32", "float64"}
    assert accumulation_dtype(torch.float16) == torch.float32
    assert dtype_from_name("bfloat16", low_precision=True) == torch.bfloat16
    with pytest.raises(InputError, match="unknown dtype 'bfloat16'"):
        dtype_from_name("bfloat16")  # the other commands keep float32 / float64
    with pytest.raises(InputError, match="must be one of"):
        DataInformation(zoo_lenet(), torch.rand(1, 1, 28, 28), dtype=torch.int32)
