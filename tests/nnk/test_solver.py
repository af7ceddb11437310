"""The batched NNK solver equals scipy.optimize.nnls and satisfies the KKT conditions."""

import numpy as np
import pytest
import scipy.linalg as sl
import scipy.optimize as so
import torch

from leafscope.errors import InputError
from leafscope.nnk.solver import solve_nnqp, solve_nnqp_single


def _random_problems(rng, B, k, extra=5):
    A = rng.standard_normal((B, k + extra, k))
    y = rng.standard_normal((B, k + extra))
    K = A.transpose(0, 2, 1) @ A
    b = np.einsum("bij,bi->bj", A, y)
    return A, y, K, b


@pytest.mark.parametrize("k", [1, 3, 12, 40])
def test_matches_scipy_nnls(k):
    rng = np.random.default_rng(k)
    A, y, K, b = _random_problems(rng, 120, k)
    theta, info = solve_nnqp(K, b, ridge=0.0, return_info=True, chunk_size=128)
    assert info.n_fallback == 0
    for i in range(len(b)):
        ref, _ = so.nnls(A[i], y[i])
        np.testing.assert_allclose(theta[i], ref, atol=1e-8, rtol=0)
        np.testing.assert_array_equal(theta[i] > 0, ref > 0)


def test_kernel_problems_match_scipy_through_cholesky():
    # NNK-like problems: Gaussian kernels of neighbourhoods, solved as least squares by scipy
    rng = np.random.default_rng(1)
    pts = rng.standard_normal((100, 31, 6))
    D = pts[:, 1:] - pts[:, :1]
    d2 = ((D[:, :, None] - D[:, None]) ** 2).sum(-1)
    s2 = np.median((D**2).sum(-1)) / 3
    K = np.exp(-d2 / (2 * s2))
    b = np.exp(-(D**2).sum(-1) / (2 * s2))
    theta = solve_nnqp(K, b, ridge=0.0)
    for i in range(len(b)):
        L = np.linalg.cholesky(K[i])
        ref, _ = so.nnls(L.T, sl.solve_triangular(L, b[i], lower=True))
        np.testing.assert_allclose(theta[i], ref, atol=1e-8, rtol=0)
        np.testing.assert_array_equal(theta[i] > 0, ref > 0)
    assert 0 < (theta > 0).sum(1).mean() < 30  # genuinely constrained problems


def test_kkt_and_reference_solver():
    rng = np.random.default_rng(2)
    _, _, K, b = _random_problems(rng, 50, 15)
    theta = solve_nnqp(K, b, ridge=0.0)
    w = b - np.einsum("bij,bj->bi", K, theta)
    assert (theta >= 0).all()
    assert np.abs(np.where(theta > 0, w, 0)).max() < 1e-9
    assert np.where(theta > 0, -1, w).max() < 1e-9
    for i in range(10):
        np.testing.assert_allclose(solve_nnqp_single(K[i], b[i], ridge=0.0), theta[i], atol=1e-9)


def test_duplicate_rows_no_nan():
    # two identical variables (duplicate neighbours) and an exact copy of the target
    rng = np.random.default_rng(3)
    P = rng.standard_normal((6, 4))
    P[1] = P[0]
    x = P[2].copy()
    K = np.exp(-((P[:, None] - P[None]) ** 2).sum(-1) / 2)[None]
    b = np.exp(-((P - x) ** 2).sum(-1) / 2)[None]
    theta = solve_nnqp(K, b)
    assert np.isfinite(theta).all()
    np.testing.assert_allclose(theta[0], np.eye(6)[2], atol=1e-6)


def test_torch_in_torch_out_and_zero_rhs():
    K = torch.eye(3, dtype=torch.float64).expand(2, 3, 3).clone()
    b = torch.tensor([[-1.0, -2.0, -3.0], [1.0, -1.0, 2.0]], dtype=torch.float64)
    theta = solve_nnqp(K, b, ridge=0.0)
    assert isinstance(theta, torch.Tensor)
    torch.testing.assert_close(
        theta, torch.tensor([[0.0, 0, 0], [1.0, 0, 2.0]], dtype=torch.float64)
    )


def test_input_errors():
    with pytest.raises(InputError, match="shape"):
        solve_nnqp(np.zeros((2, 3, 4)), np.zeros((2, 3)))
    with pytest.raises(InputError, match="b must have shape"):
        solve_nnqp(np.zeros((2, 3, 3)), np.zeros((2, 4)))
    with pytest.raises(InputError, match="NaN"):
        solve_nnqp(np.full((1, 2, 2), np.nan), np.zeros((1, 2)))
