"""Exact active-set solver for many small non-negative quadratic programs at once.

For every problem ``p`` of a batch it solves

    θ_p = argmin_{θ ≥ 0} ½ θᵀ K_p θ − b_pᵀ θ,        K_p (k × k) symmetric positive definite,

which is the NNK (non-negative kernel regression) problem of one node when ``K_p = K_SS`` and
``b_p = K_Si``. The method is an exact active-set method, block principal pivoting (Júdice &
Pires 1994; Kim & Park 2011), run for all problems of a chunk together:

* the variables are split into a free set F and a bound set (θ_j = 0); each iteration solves
  ``K_FF θ_F = b_F`` for every unfinished problem with one batched Cholesky (free variables
  gathered to the front, identity rows for padding), then moves every infeasible variable
  (θ_j < 0 in F, or gradient ``w_j = (b − Kθ)_j > tol`` outside F) to the other set; after three
  exchanges that do not reduce the number of infeasible variables only the last one moves
  (Murty's rule: finite termination). A problem is finished exactly when its KKT conditions
  hold, so the result is the exact minimiser (up to rounding), not an approximation;
* problems start from F = {j : b_j > 0} (the unconstrained solution), which is close to the
  answer when most neighbours survive and costs a few iterations otherwise;
* every result is *certified* afterwards (θ ≥ 0, ``|w_j| ≤ tol`` on the support, ``w_j ≤ tol``
  off it); the rare problems that fail (iteration cap, Cholesky breakdown) are re-solved one by
  one by :func:`scipy.optimize.nnls` (Lawson–Hanson) on the equivalent least-squares problem
  (:func:`solve_nnqp_single`).

The batched solver is hand-written because it is faster: one batched Cholesky per iteration for
a whole chunk of problems, on the GPU when the tensors are there, where scipy solves one problem
at a time on the CPU.

A ridge ``ridge · mean(diag K_p)`` is added to every diagonal so that matrices with duplicate
rows (duplicate data points) stay positive definite; with the default ``ridge = 1e-10`` this
moves the weights by about ``1e-10 · cond(K_PP)`` relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import torch

from leafscope.errors import InputError

__all__ = ["NNQPInfo", "solve_nnqp", "solve_nnqp_inplace", "solve_nnqp_single"]


@dataclass
class NNQPInfo:
    """Diagnostics of one :func:`solve_nnqp` call.

    Attributes:
        iterations: largest number of batched iterations used by any chunk.
        n_fallback: number of problems re-solved by the per-problem fallback.
    """

    iterations: int = 0
    n_fallback: int = 0


def solve_nnqp(
    K: np.ndarray | torch.Tensor,
    b: np.ndarray | torch.Tensor,
    *,
    tol: float = 1e-10,
    ridge: float = 1e-10,
    max_iter: int | None = None,
    chunk_size: int = 1024,
    return_info: bool = False,
) -> np.ndarray | torch.Tensor | tuple[np.ndarray | torch.Tensor, NNQPInfo]:
    """Solve ``min_{θ≥0} ½θᵀKθ − bᵀθ`` exactly for a batch of small problems.

    Args:
        K: (B, k, k) symmetric positive (semi)definite matrices, NumPy or torch.
        b: (B, k) linear terms.
        tol: KKT tolerance, relative to ``max(1, max|b_p|)``: a variable enters the free set only
            if its gradient ``(b − Kθ)_j`` exceeds it.
        ridge: relative ridge; ``ridge · mean(diag K_p)`` is added to each diagonal.
        max_iter: cap on batched iterations per chunk (default ``3k + 10``); problems still
            running are handed to the per-problem fallback.
        chunk_size: problems solved together (memory ~ 8·chunk_size·k² bytes per copy).
        return_info: also return an :class:`NNQPInfo`.

    Returns:
        θ, shape (B, k), float64, the same library (NumPy or torch) as ``K``; with
        ``return_info`` a tuple ``(θ, info)``.
    """
    as_numpy = not isinstance(K, torch.Tensor)
    Kt = torch.as_tensor(np.asarray(K) if as_numpy else K)
    bt = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b)
    _check_inputs(Kt, bt, tol, ridge, chunk_size)
    theta = torch.empty(bt.shape, dtype=torch.float64, device=Kt.device)
    info = NNQPInfo()
    for start in range(0, bt.shape[0], chunk_size):
        stop = min(start + chunk_size, bt.shape[0])
        Kc = Kt[start:stop].to(dtype=torch.float64, copy=True)
        th, it, nf = solve_nnqp_inplace(Kc, bt[start:stop].to(torch.float64), tol, ridge, max_iter)
        info.iterations = max(info.iterations, it)
        info.n_fallback += nf
        theta[start:stop] = th
    out = theta.cpu().numpy() if as_numpy else theta
    return (out, info) if return_info else out


def solve_nnqp_inplace(
    K: torch.Tensor, b: torch.Tensor, tol: float, ridge: float, max_iter: int | None = None
) -> tuple[torch.Tensor, int, int]:
    """Unchecked core of :func:`solve_nnqp` for one chunk of float64 tensors.

    ``K`` is modified in place (the ridge is added to its diagonal); inputs are assumed finite.

    Returns:
        (θ (B, k), iterations used, number of problems solved by the fallback).
    """
    k = b.shape[1]
    max_iter = 3 * k + 10 if max_iter is None else int(max_iter)
    diag = torch.diagonal(K, dim1=1, dim2=2)
    diag += (ridge * diag.mean(1).clamp_min(1e-300))[:, None]
    scale = b.abs().amax(1).clamp_min(1.0)
    th, iters = _bpp(K, b, tol * scale, max_iter)
    ok = _certify(K, b, th, tol * scale)
    bad = torch.nonzero(~ok).flatten().tolist()
    for r in bad:
        th[r] = torch.from_numpy(
            solve_nnqp_single(K[r].cpu().numpy(), b[r].cpu().numpy(), ridge=0.0)
        ).to(th.device)
    return th, iters, len(bad)


def solve_nnqp_single(K: np.ndarray, b: np.ndarray, *, ridge: float = 1e-10) -> np.ndarray:
    """Reference solver for one problem, used as the fallback: :func:`scipy.optimize.nnls`
    (Lawson–Hanson) on the equivalent least-squares problem.

    With ``K = L Lᵀ`` (Cholesky), ``½θᵀKθ − bᵀθ = ½‖Lᵀθ − L⁻¹b‖² + const``, so the minimiser
    over ``θ ≥ 0`` is the NNLS solution for ``A = Lᵀ``, ``c = L⁻¹b``. When ``K`` is only
    semidefinite (no Cholesky), ``A = Λ^{1/2}Vᵀ`` and ``c = Λ^{-1/2}Vᵀb`` from the eigenvalues
    above ``k · eps · λ_max``: exact when ``b`` lies in the range of ``K`` (always true for kernel
    problems ``b = K_Si`` of a positive semidefinite kernel), otherwise the least-squares
    projection of the problem onto that range.

    Args:
        K: (k, k) symmetric positive (semi)definite matrix.
        b: (k,) linear term.
        ridge: relative ridge added to the diagonal (see :func:`solve_nnqp`).

    Returns:
        θ (k,), float64.
    """
    K = np.array(K, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    k = b.shape[0]
    K[np.diag_indices(k)] += ridge * max(float(np.mean(np.diag(K))), 1e-300)
    try:
        L = scipy.linalg.cholesky(K, lower=True)
        A, c = L.T, scipy.linalg.solve_triangular(L, b, lower=True)
    except scipy.linalg.LinAlgError:
        lam, V = np.linalg.eigh((K + K.T) / 2)
        keep = lam > k * np.finfo(np.float64).eps * max(float(lam.max(initial=0.0)), 1e-300)
        if not keep.any():
            return np.zeros(k)
        root = np.sqrt(lam[keep])
        A, c = root[:, None] * V[:, keep].T, (V[:, keep].T @ b) / root
    theta, _ = scipy.optimize.nnls(A, c, maxiter=max(100, 30 * k))
    return theta


def _check_inputs(K: torch.Tensor, b: torch.Tensor, tol: float, ridge: float, chunk: int) -> None:
    if K.ndim != 3 or K.shape[1] != K.shape[2]:
        raise InputError(f"K must have shape (B, k, k), got {tuple(K.shape)}: stack the matrices")
    if b.ndim != 2 or b.shape != K.shape[:2]:
        raise InputError(
            f"b must have shape (B, k) = {tuple(K.shape[:2])}, got {tuple(b.shape)}: "
            "pass one linear term per matrix"
        )
    if not (torch.isfinite(K).all() and torch.isfinite(b).all()):
        raise InputError("K or b contain NaN or inf: clean the kernel values first")
    if not tol > 0 or not ridge >= 0:
        raise InputError(f"tol must be > 0 and ridge >= 0, got tol={tol}, ridge={ridge}")
    if chunk < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk}")


def _bpp(
    K: torch.Tensor, b: torch.Tensor, tol: torch.Tensor, max_iter: int
) -> tuple[torch.Tensor, int]:
    """Batched block principal pivoting (Júdice & Pires; Kim & Park) for ``min_{θ≥0} ½θᵀKθ − bᵀθ``.

    Each iteration solves the free-set systems ``K_FF θ_F = b_F`` of all unfinished problems with
    one batched Cholesky (bound variables get identity rows), then exchanges every infeasible
    variable (``θ_j < 0`` in F, or gradient ``w_j = (b − Kθ)_j > tol`` in the bound set) between
    the sets; after three exchanges that do not reduce the number of infeasible variables, only
    the infeasible variable with the largest index is exchanged (Murty's rule, which guarantees
    finite termination). Finishes exactly when the KKT conditions hold. Rows that do not finish
    within ``max_iter`` (or whose Cholesky fails) are returned as NaN for the fallback.
    """
    B, k = b.shape
    dev, dt = K.device, K.dtype
    out = torch.full((B, k), torch.nan, dtype=dt, device=dev)
    rows = torch.arange(B, device=dev)
    free = b > 0
    best = torch.full((B,), k + 1, dtype=torch.long, device=dev)
    backup = torch.full((B,), 3, dtype=torch.long, device=dev)
    ar_k = torch.arange(k, device=dev)
    eye = torch.eye(k, dtype=dt, device=dev)
    it = 0
    while rows.numel() and it < max_iter:
        it += 1
        theta, w, ok = _free_set_solve(K, b, free, eye)
        infeas = torch.where(free, theta < 0, w > tol[:, None])
        n_inf = infeas.sum(1)
        done = (n_inf == 0) | ~ok
        if bool(done.any()):
            fin = done & ok
            out[rows[fin]] = theta[fin].clamp_min(0.0)
            keep = torch.nonzero(~done).flatten()
            K, b, tol, free, best, backup, rows = (
                K[keep],
                b[keep],
                tol[keep],
                free[keep],
                best[keep],
                backup[keep],
                rows[keep],
            )
            infeas, n_inf = infeas[keep], n_inf[keep]
            if not rows.numel():
                break
        better = n_inf < best
        best = torch.where(better, n_inf, best)
        backup = torch.where(better, torch.full_like(backup, 3), backup - 1)
        single = backup < 0
        if bool(single.any()):
            last = torch.where(infeas, ar_k, -1).amax(1)
            only = ar_k[None, :] == last[:, None]
            infeas = torch.where(single[:, None], only, infeas)
        free = free ^ infeas
    return out, it


def _free_set_solve(
    K: torch.Tensor, b: torch.Tensor, free: torch.Tensor, eye: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """θ with ``K_FF θ_F = b_F`` and θ = 0 off F, the gradient ``w = b − Kθ``, and a flag per row
    telling whether the Cholesky factorisation succeeded.

    The free variables are gathered to the front (size ``p = max |F|`` of the batch, identity
    padding), so problems with small supports cost O(p³), not O(k³).
    """
    B, k = b.shape
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    p = int(free.sum(1).max()) if B else 0
    if p == 0:
        theta = torch.zeros_like(b)
        return theta, b.clone(), torch.ones(B, dtype=torch.bool, device=b.device)
    if p <= 0.75 * k:
        order = torch.argsort((~free).to(torch.int8), dim=1, stable=True)[:, :p]
        valid = free.gather(1, order)
        A = K.gather(1, order[:, :, None].expand(B, p, k)).gather(
            2, order[:, None, :].expand(B, p, p)
        )
        A = torch.where(valid[:, :, None] & valid[:, None, :], A, eye[:p, :p])
        rhs = torch.where(valid, b.gather(1, order), zero)
    else:
        order, valid = None, free
        A = torch.where(free[:, :, None] & free[:, None, :], K, eye)
        rhs = torch.where(free, b, zero)
    L, info = torch.linalg.cholesky_ex(A)
    ok = info == 0
    sol = torch.cholesky_solve(rhs[:, :, None], L).squeeze(2)
    sol = torch.where(valid & ok[:, None], sol, zero)
    theta = sol if order is None else torch.zeros_like(b).scatter_(1, order, sol)
    w = b - torch.bmm(K, theta[:, :, None]).squeeze(2)
    return theta, w, ok


def _certify(
    K: torch.Tensor, b: torch.Tensor, theta: torch.Tensor, tol: torch.Tensor
) -> torch.Tensor:
    """True where θ is finite, θ ≥ 0, ``|w_j| ≤ tol`` on the support and ``w_j ≤ tol`` off it
    (the KKT conditions of the problem, with ``w = b − Kθ``)."""
    finite = torch.isfinite(theta).all(1)
    th = torch.nan_to_num(theta, nan=0.0)
    w = b - torch.bmm(K, th[:, :, None]).squeeze(2)
    supp = th > 0
    viol = torch.where(supp, w.abs(), w).amax(1)
    return finite & (th >= 0).all(1) & (viol <= tol)
