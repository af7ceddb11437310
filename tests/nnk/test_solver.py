"""The batched NNK solver equals scipy.optimize.nnls and satisfies the KKT conditions."""

import itertools

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


def _brute_force(K, b):
    """Minimiser of ½θᵀKθ − bᵀθ over θ ≥ 0 by trying every support (independent of NNLS)."""
    k = len(b)
    best, best_val = np.zeros(k), 0.0
    for mask in itertools.product([False, True], repeat=k):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        theta = np.zeros(k)
        theta[idx] = np.linalg.lstsq(K[np.ix_(idx, idx)], b[idx], rcond=None)[0]
        if theta.min() < -1e-12:
            continue
        val = 0.5 * theta @ K @ theta - b @ theta
        if val < best_val - 1e-14:
            best, best_val = theta.clip(0), val
    return best, best_val


def test_scipy_fallback_matches_brute_force_and_is_used_by_solve_nnqp():
    rng = np.random.default_rng(4)
    _, _, K, b = _random_problems(rng, 8, 6, extra=2)
    theta, info = solve_nnqp(K, b, ridge=0.0, max_iter=0, return_info=True)
    assert info.n_fallback == len(b)  # no batched iteration: every problem goes to scipy
    for i in range(len(b)):
        ref, _ = _brute_force(K[i], b[i])
        np.testing.assert_allclose(solve_nnqp_single(K[i], b[i], ridge=0.0), ref, atol=1e-9)
        np.testing.assert_allclose(theta[i], ref, atol=1e-9)


def test_scipy_fallback_on_a_singular_kernel():
    # rank-2 K (five points in a 2-D feature space, no Cholesky); b lies in the range of K
    rng = np.random.default_rng(5)
    F = rng.standard_normal((5, 2))
    K = F @ F.T
    b = K[:, 0] + 0.5 * K[:, 3]
    theta = solve_nnqp_single(K, b, ridge=0.0)
    _, best_val = _brute_force(K, b)
    assert (theta >= 0).all()
    assert 0.5 * theta @ K @ theta - b @ theta == pytest.approx(best_val, abs=1e-9)
