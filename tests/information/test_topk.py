"""Matrix-free top-k spectra of G against the exact factored DataInformation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leafscope import top_eigenvalues as top_from_root
from leafscope.errors import InputError
from leafscope.information import DataInformation, TopKSpectrum, top_eigenvalues
from leafscope.testing import LinearSoftmax, closed_form_dim, shared_data_dir, tiny_cnn, tiny_mlp

F64 = torch.float64


def cnn50(head_scale: float = 1.0) -> nn.Module:
    """A small random CNN on (3, 12, 12) images with C = 50 classes."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.GELU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 50),
    )
    with torch.no_grad():
        model[-1].weight.mul_(head_scale)
        model[-1].bias.mul_(head_scale)
    return model


def check_against_exact(model, x, k, rel=1e-8, **kwargs) -> TopKSpectrum:
    all_exact = DataInformation(model, x, dtype=F64).eigenvalues()
    exact = all_exact[:, :k]
    spec = top_eigenvalues(model, x, k, dtype=F64, **kwargs)
    assert spec.eigenvalues.shape == spec.error_bounds.shape == (x.shape[0], k)
    theta = spec.eigenvalues
    # interlacing: θ_i ≤ λ_i; residual theorem: some eigenvalue within ‖r_i‖ of θ_i
    assert bool((theta <= exact * (1 + 1e-12) + 1e-15 * exact[:, :1]).all())
    nearest = (theta[:, :, None] - all_exact[:, None, :]).abs().amin(dim=2)
    assert bool((nearest <= spec.residual_norms + 1e-14 * exact[:, :1]).all())
    err = (theta - exact).abs()
    converged = spec.converged
    # the certified bound covers the true error of every converged pair, pair by pair
    assert bool((err <= spec.error_bounds)[converged].all())
    assert bool(((err / exact)[converged] <= rel).all())
    return spec


@pytest.mark.parametrize(
    "model, shape",
    [
        (tiny_mlp(12, 6, activation="tanh"), (12,)),
        (tiny_mlp(12, 7, activation="gelu", seed=3), (3, 4)),
        (tiny_cnn(5, activation="tanh"), (1, 8, 8)),
    ],
)
@pytest.mark.parametrize("k", [1, 3])
def test_toys_match_exact_factor(model, shape, k):
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
    spec = check_against_exact(model, x, k, tol=1e-10)
    assert bool(spec.converged.all())


def test_linear_softmax_all_nonzero_eigenvalues():
    gen = torch.Generator().manual_seed(2)
    model = LinearSoftmax(torch.randn(6, 9, generator=gen), torch.randn(6, generator=gen))
    x = torch.randn(3, 9, generator=gen)
    spec = check_against_exact(model, x, 5, tol=1e-12)
    dense = closed_form_dim(model.double(), x.double())
    ref = torch.linalg.eigvalsh(dense).flip(-1)[:, :5]
    assert torch.allclose(spec.eigenvalues, ref, rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    "head_scale, k, block_size", [(1.0, 10, 14), (60.0, 3, 5), (60.0, 10, 10), (1.0, 10, 1)]
)
def test_cnn_with_50_classes(head_scale, k, block_size):
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    spec = check_against_exact(cnn50(head_scale), x, k, tol=1e-10, block_size=block_size)
    assert bool(spec.converged.all())
    applications = int(spec.operator_applications.max())
    assert applications <= 49
    if head_scale > 1:  # peaked p: converged before the basis filled the 49-dimensional space
        assert applications < 49


def test_unconverged_pairs_are_flagged_and_still_near_eigenvalues():
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    spec = check_against_exact(cnn50(4.0), x, 8, tol=1e-12, block_size=8, max_iter=2)
    assert not bool(spec.converged.all())
    assert int(spec.iterations.max()) == 2 and int(spec.operator_applications.max()) == 16


def test_repeated_eigenvalues_converge():
    # orthogonal weight rows with norms 2 (×5) and 1 (×7), x = 0, no bias: p uniform, and
    # K = (1/C) P D² P has eigenvalue 4/C four times, one mixed value, then 1/C six times
    c, n = 12, 20
    q, _ = torch.linalg.qr(torch.randn(n, c, generator=torch.Generator().manual_seed(0), dtype=F64))
    norms = torch.tensor([2.0] * 5 + [1.0] * 7, dtype=F64)
    model = LinearSoftmax((q.T * norms[:, None]).float(), torch.zeros(c))
    model = model.double()
    with torch.no_grad():
        model.weight.copy_(q.T * norms[:, None])
    x = torch.zeros(2, n, dtype=F64)
    spec = check_against_exact(model, x, 6, tol=1e-12, block_size=4)  # multiplicity 4
    assert bool(spec.converged.all())
    theta = spec.eigenvalues
    assert torch.allclose(theta[:, :4], torch.full_like(theta[:, :4], 4 / c), rtol=1e-12)
    assert torch.allclose(theta[:, 5], torch.full_like(theta[:, 5], 1 / c), rtol=1e-12)
    assert 1 / c < float(theta[0, 4]) < 4 / c


def fourfold_model() -> tuple[nn.Module, torch.Tensor]:
    """K = (1/C)·diag-like with eigenvalue 4/C four times, then 2.75/C, then 1/C (x = 0)."""
    c, n = 12, 20
    q, _ = torch.linalg.qr(torch.randn(n, c, generator=torch.Generator().manual_seed(0), dtype=F64))
    norms = torch.tensor([2.0] * 5 + [1.0] * 7, dtype=F64)
    model = LinearSoftmax(torch.zeros(c, n), torch.zeros(c)).double()
    with torch.no_grad():
        model.weight.copy_(q.T * norms[:, None])
    return model, torch.zeros(1, n, dtype=F64)


@pytest.mark.parametrize("block_size", [2, 3])
def test_blocks_resolve_a_fourfold_eigenvalue(block_size):
    # blocks narrower than the multiplicity still get all four copies here because the Krylov
    # space turns invariant and each restart (a fresh random direction) adds one more
    model, x = fourfold_model()
    spec = check_against_exact(model, x, 5, tol=1e-12, block_size=block_size)
    assert torch.allclose(spec.eigenvalues[0, :4], torch.full((4,), 4 / 12, dtype=F64))
    assert abs(float(spec.eigenvalues[0, 4]) - 2.75 / 12) < 1e-12


def test_single_vector_lanczos_can_miss_a_copy():
    # the documented limit of block_size = 1 (as of scipy's eigsh): one copy of 4/C is missed
    # and θ_4 = 2.75/C is reported as converged; the default block of 3 does not miss it
    model, x = fourfold_model()
    spec = top_eigenvalues(model, x, 5, tol=1e-12, block_size=1)
    assert abs(float(spec.eigenvalues[0, 3]) - 2.75 / 12) < 1e-12
    assert bool(spec.converged.all())


def test_linearized_and_plain_jvp_agree():
    model = cnn50(5.0)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(7))
    a = top_eigenvalues(model, x, 4, dtype=F64, tol=1e-10)
    b = top_eigenvalues(model, x, 4, dtype=F64, tol=1e-10, linearize=False)
    assert torch.allclose(a.eigenvalues, b.eigenvalues, rtol=1e-11, atol=0)
    assert torch.equal(a.operator_applications, b.operator_applications)


def test_random_forward_refused():
    model = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 6)).train()
    with pytest.raises(InputError, match="not deterministic"):
        top_eigenvalues(model, torch.randn(2, 12), 2, force_eval=False)


def test_eigenvectors_are_eigenvectors_of_g():
    gen = torch.Generator().manual_seed(4)
    model = LinearSoftmax(torch.randn(5, 8, generator=gen), torch.randn(5, generator=gen))
    x = torch.randn(3, 2, 4, generator=gen)
    spec = top_eigenvalues(model, x, 3, dtype=F64, tol=1e-12, eigenvectors=True)
    v = spec.eigenvectors
    assert v.shape == (3, 3, 2, 4)
    dense = closed_form_dim(model.double(), x.double())
    flat = v.flatten(2)
    gv = torch.einsum("nij,nkj->nki", dense, flat)
    assert torch.allclose(gv, spec.eigenvalues[:, :, None] * flat, atol=1e-10)
    gram = flat @ flat.mT
    assert torch.allclose(gram, torch.eye(3, dtype=F64).expand(3, 3, 3), atol=1e-10)


def test_chunks_and_mode_and_dtype_untouched():
    model = cnn50(6.0).train()
    x = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    whole = top_eigenvalues(model, x, 4, dtype=F64, tol=1e-10)
    parts = top_eigenvalues(model, x, 4, dtype=F64, tol=1e-10, chunk_size=3)
    assert torch.allclose(whole.eigenvalues, parts.eigenvalues, rtol=1e-9)
    assert model.training and next(model.parameters()).dtype == torch.float32
    assert whole.probs.shape == (4, 50) and torch.allclose(
        whole.probs.sum(1), torch.ones(4, dtype=F64)
    )


def test_float32_default_dtype():
    model = cnn50(8.0)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    spec = top_eigenvalues(model, x, 5, tol=1e-4)
    exact = DataInformation(model, x, dtype=F64).eigenvalues()[:, :5]
    assert spec.eigenvalues.dtype == torch.float32
    assert float(((spec.eigenvalues.double() - exact).abs() / exact).max()) < 1e-3


def test_json_records_and_summary():
    model = tiny_mlp(12, 6, activation="tanh")
    spec = top_eigenvalues(model, torch.randn(3, 12), 2, dtype=F64)
    points = spec.to_points()
    assert len(points) == 3 and len(points[0]["log10_eigenvalues"]) == 2
    assert points[0]["error_bounds"][0] >= 0 and points[0]["converged"] is True
    summary = spec.summary()
    assert summary["median_log10_highest"] >= summary["median_log10_lowest"]
    assert top_from_root is top_eigenvalues


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 6}, "k=6 exceeds C-1=5"),
        ({"k": 0}, "k must be an integer >= 1"),
        ({"k": 2, "tol": 0.0}, "tol must be > 0"),
        ({"k": 2, "block_size": 0}, "block_size must be an integer >= 1"),
        ({"k": 2, "max_iter": 0}, "max_iter must be >= 1"),
        ({"k": 2, "chunk_size": 0}, "chunk_size must be >= 1"),
    ],
)
def test_bad_arguments_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        top_eigenvalues(tiny_mlp(12, 6), torch.randn(2, 12), **kwargs)


@pytest.mark.skipif(shared_data_dir() is None, reason="shared MNIST files absent")
def test_cli_spectrum_top_k(tmp_path):
    import json

    from leafscope.cli.main import main
    from leafscope.models import build_model
    from leafscope.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "m.pt", model=build_model("lenet"), epoch=0, step=0, history=[]
    )
    out = tmp_path / "top.json"
    argv = ["spectrum", "--checkpoint", str(ckpt), "--points", "3", "--top-k", "4"]
    assert main([*argv, "--json", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["top_k"] == 4 and len(result["points"]) == 3
    record = result["points"][0]
    assert len(record["log10_eigenvalues"]) == len(record["error_bounds"]) == 4
    assert record["converged"] and all(r["label"] >= 0 for r in result["points"])
    assert len({r["index"] for r in result["points"]}) == 3  # three distinct sampled points
    assert result["summary"]["median_log10_trace"] is None
    assert main([*argv[:-1], "10", "--device", "cpu"]) == 2  # k > C-1 refused in one line
