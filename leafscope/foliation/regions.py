"""Linear regions of piecewise-linear networks and the distribution D_x on them (theory §2).

With ``v_i = ∇x log p_i``, ``D_x = span{J_i − J_k}``: it does not depend on the probabilities.
In a network built from affine maps, ReLU and max pooling, the logits are affine on each
*linear region* (the set of inputs sharing one activation pattern: the sign of every ReLU
input and the argmax of every pooling window), so J and hence D_x are constant there.

- :func:`activation_pattern`: the pattern of each input, through forward pre-hooks on the
  ReLU / LeakyReLU / MaxPool modules (pre-hooks, so in-place ReLUs are read before they act).
- :func:`distribution_basis`: an orthonormal basis of ``span{J_i − J_1}`` (float64 by default).
- :func:`principal_angles`: the angles between two subspaces, accurate near 0 (sines and
  cosines combined, Björck–Golub), so "the same subspace" reads 0 to float64 precision.
- :func:`span_fraction`: ``‖P_S v‖ / ‖v‖`` for the span S of a union of bases.
- :func:`pattern_changes`: how many times the pattern changes along a sequence of points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.foliation._common import model_in
from leafscope.information import check_inputs, eval_mode
from leafscope.information.jacobian import input_jacobian

__all__ = [
    "PIECEWISE_LINEAR",
    "activation_pattern",
    "distribution_basis",
    "orthonormal_rows",
    "pattern_changes",
    "principal_angles",
    "span_fraction",
]

PIECEWISE_LINEAR = (nn.ReLU, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_POOL = {nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d}


def _pool_indices(module: nn.Module, x: Tensor) -> Tensor:
    fn = _POOL[type(module)]
    _, idx = fn(
        x,
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        ceil_mode=module.ceil_mode,
        return_indices=True,
    )
    return idx.flatten(1)


def activation_pattern(model: nn.Module, x: Tensor, *, pooling: bool = True) -> Tensor:
    """The activation pattern of each input: one integer row per point.

    Args:
        model: classifier whose non-linearities are ``nn.ReLU`` / ``nn.LeakyReLU`` modules
            (functional calls such as ``torch.relu`` are invisible to the hooks).
        x: inputs ``(N, *shape)`` (the model is evaluated in their dtype, cast if needed).
        pooling: also record the argmax of every max-pooling window (part of the linear region).

    Returns:
        ``(N, K)`` int64: 1/0 for each ReLU input (> 0 or not), then the flat argmax index of
        each pooling window. Two points share a linear region iff (generically) their rows match.

    Raises:
        InputError: the model has no ReLU / LeakyReLU module.
    """
    check_inputs(x, "points")
    model = model_in(model, x.dtype)
    kinds = PIECEWISE_LINEAR if pooling else (nn.ReLU, nn.LeakyReLU)
    modules = [m for m in model.modules() if isinstance(m, kinds)]
    if not any(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for m in modules):
        raise InputError(
            "the model has no nn.ReLU / nn.LeakyReLU module: activation patterns need "
            "piecewise-linear modules (GeLU / sigmoid networks have no linear regions)"
        )
    parts: list[Tensor] = []

    def hook(module: nn.Module, args: tuple) -> None:
        inp = args[0]
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            parts.append((inp > 0).flatten(1).long())
        else:
            parts.append(_pool_indices(module, inp))

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return torch.cat(parts, dim=1).cpu()


def pattern_changes(patterns: Tensor) -> tuple[int, int]:
    """Along a sequence of patterns ``(T, K)``: (number of consecutive changes, distinct rows)."""
    if patterns.dim() != 2 or patterns.shape[0] == 0:
        raise InputError(f"patterns must be (T, K) with T >= 1 (got {tuple(patterns.shape)})")
    changes = int((patterns[1:] != patterns[:-1]).any(dim=1).sum())
    distinct = int(torch.unique(patterns, dim=0).shape[0])
    return changes, distinct


def orthonormal_rows(vectors: Tensor, rtol: float = 1e-10) -> Tensor:
    """Orthonormal basis ``(r, n)`` of the row span of ``vectors`` (k, n): right singular
    vectors with ``σ > rtol·σ_max`` (r = 0 for a zero matrix)."""
    if vectors.dim() != 2:
        raise InputError(f"vectors must be (k, n) (got {tuple(vectors.shape)})")
    _, s, vh = torch.linalg.svd(vectors, full_matrices=False)
    if s.numel() == 0 or s[0] == 0:
        return vectors.new_zeros(0, vectors.shape[1])
    return vh[s > rtol * s[0]]


def distribution_basis(
    model: nn.Module,
    x: Tensor,
    *,
    rtol: float = 1e-10,
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
) -> list[Tensor]:
    """Orthonormal bases of ``D_x = span{J_i − J_1}`` at each point.

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``.
        x: points ``(N, *shape)``.
        rtol: relative singular-value tolerance of the rank.
        dtype: computation dtype (float64: D_x inside a region is then equal to ~1e-15).
        chunk_size: points per vectorised Jacobian chunk.

    Returns:
        One ``(r_k, n)`` tensor per point (r_k ≤ C − 1), rows orthonormal.
    """
    check_inputs(x, "points")
    model = model_in(model, dtype)
    _, jac = input_jacobian(model, x.detach().to(dtype), chunk_size=chunk_size)
    diffs = jac[:, 1:] - jac[:, :1]
    return [orthonormal_rows(d, rtol) for d in diffs]


def principal_angles(a: Tensor, b: Tensor, rtol: float = 1e-10) -> Tensor:
    """Principal angles (radians, ascending) between the row spans of ``a`` (k, n) and ``b``
    (m, n); ``min(rank a, rank b)`` angles.

    Cosines come from the singular values of ``Qa Qbᵀ``, sines from those of
    ``Qa − (Qa Qbᵀ) Qb`` (the part of span a outside span b); each angle is ``atan2(sin, cos)``,
    accurate for small and large angles alike.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise InputError(
            f"a and b must be (k, n) and (m, n) with the same n (got {tuple(a.shape)} and "
            f"{tuple(b.shape)})"
        )
    qa, qb = orthonormal_rows(a, rtol), orthonormal_rows(b, rtol)
    if qa.shape[0] > qb.shape[0]:
        qa, qb = qb, qa
    k = qa.shape[0]
    if k == 0:
        return a.new_zeros(0)
    cos = torch.linalg.svdvals(qa @ qb.T)[:k]
    sin = torch.linalg.svdvals(qa - (qa @ qb.T) @ qb)[:k].flip(0)
    return torch.atan2(sin, cos.clamp(max=1.0))


def span_fraction(bases: list[Tensor] | Tensor, v: Tensor, rtol: float = 1e-10) -> float:
    """``‖P_S v‖ / ‖v‖`` where S is the span of all the rows of ``bases`` (a list of (r_k, n)
    tensors or one (k, n) tensor) and ``v`` a vector with n entries.

    ``sqrt(1 − fraction²)`` is then the least relative distance ``‖end − x‖ / ‖end − start‖``
    that any path from start whose steps lie in these subspaces can reach (v = end − start).
    """
    stacked = torch.cat(list(bases), dim=0) if isinstance(bases, (list, tuple)) else bases
    v = v.reshape(-1).to(stacked.dtype)
    if stacked.dim() != 2 or stacked.shape[1] != v.numel():
        raise InputError(
            f"bases must have rows of length {v.numel()} (got {tuple(stacked.shape)}): use the "
            "bases of the same input space as v"
        )
    norm = v.norm()
    if norm == 0:
        raise InputError("v is zero: the fraction of a zero vector is undefined")
    q = orthonormal_rows(stacked, rtol)
    return float((q @ v).norm() / norm)
