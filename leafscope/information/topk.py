"""Top-k spectrum of the data information matrix G without forming the C×n factor.

``G = Jᵀ M(p) J = AᵀA`` with ``A = B(p) J`` (C×n, see :mod:`leafscope.information.matrices`).
Its nonzero eigenvalues are those of the C×C Gram matrix

    K = A Aᵀ = B (J Jᵀ) Bᵀ,   B = diag(√p) − √p pᵀ,

so we never form A (C backward passes, C·n numbers) nor K: ``K u`` costs one vector–Jacobian
product ``Jᵀ(Bᵀu)`` (``torch.func.vjp``, the forward graph is kept and reused) and one
Jacobian–vector product ``J(·)`` (``torch.func.linearize``, else ``jvp``), both vectorised
over a block of vectors with ``vmap`` and batched over the points (the model sees the whole
chunk as one batch, so it must treat samples independently, as any model in eval mode does).
``B`` and ``Bᵀ`` cost O(C): ``Bᵀu = √p⊙u − p(√pᵀu)``, ``Bw = √p⊙w − √p(pᵀw)``; ``Bᵀ√p = 0``,
so ``√p`` spans the null space of K and the iteration lives in its complement (dimension C − 1).

Algorithm: block Lanczos on K with full reorthogonalisation (classical Gram–Schmidt twice,
then QR) and Rayleigh–Ritz on the whole Krylov basis at every step. Why this one: for a fixed
number of products, the block Krylov space contains the power / subspace-iteration space, so
its Ritz values are at least as good (they converge like Chebyshev polynomials in the gap ratio,
not like its powers). A block of width b resolves repeated eigenvalues up to multiplicity b;
narrower blocks need fewer products in all (default b = 3: for the top ten of a 1000-class
ResNet-18 at tol 1e-3, 36 products with b = 3 against 84 with b = 14, ``docs/benchmarks.md``).
Working on K instead of G keeps every vector of length C, so the basis, its images and the
Rayleigh–Ritz cost nothing next to the products, and the (n − C + 1)-dimensional null space of
G never enters. The start block is ``B g`` with Gaussian ``g``: it lies in the range of B
(which contains the range of K) and weights class i by √p_i, as K does. When the basis fills
the (C−1)-dimensional space the result is exact.

Error statement. For a Ritz pair (θ, u) of the symmetric K with residual ``r = Ku − θu`` some
eigenvalue lies within ‖r‖ of θ; Cauchy interlacing gives θ_i ≤ λ_i. If the rest of the
spectrum is at distance ≥ δ from θ_i, then ``|λ_i − θ_i|`` ≤ ‖r_i‖²/δ; we take
``δ_i = min(θ_{i−1} − θ_i, θ_i − θ_{i+1} − ‖r_{i+1}‖)`` (λ_{i−1} ≥ θ_{i−1} by interlacing, and
λ_{i+1} ≤ θ_{i+1} + ‖r_{i+1}‖). The reported bound is ``‖r_i‖`` or, when δ_i > ‖r_i‖, the
smaller ``‖r_i‖²/δ_i``. Residuals alone cannot see an eigenvector the Krylov space missed
entirely: for simple eigenvalues the random start makes that an event of probability zero, but
a block of width b holds at most b vectors of one eigenspace until the space turns invariant,
so an eigenvalue of multiplicity > b can lose copies (as in scipy's single-vector ``eigsh``;
``block_size`` ≥ the multiplicity prevents it). The pairing of θ_i
with the i-th largest eigenvalue assumes it, and is reliable for converged pairs only (an
unconverged pair is flagged; its ‖r_i‖ still bounds the distance to *some* eigenvalue, and
θ_i ≤ λ_i still holds). Each bound carries a rounding allowance ``8·√(m+1)·eps·θ_1`` (m: basis
size), and pairs whose bound is below twice that count as converged; bounds refer to K as
evaluated in ``dtype`` (use float64 to certify eigenvalues far below θ_1).

Low precision. With ``dtype`` bfloat16 / float16 the model's forward, the vjps and the jvps
run in that dtype, while p, B, the Krylov basis, the Rayleigh–Ritz problem and the bounds are in
float32 (:func:`leafscope.dtypes.accumulation_dtype`). The bounds then certify the Ritz values
of the operator *as evaluated* with low-precision products; they do not cover the rounding of
those products (the distance to the float64 spectrum: measured in ``docs/foundation.md``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import jvp, linearize, vjp, vmap

from leafscope.dtypes import accumulation_dtype, check_compute_dtype
from leafscope.errors import InputError, check_positive_int
from leafscope.information.jacobian import (
    attention_route,
    cast_model,
    check_inputs,
    constant_parameters,
    eval_mode,
    logits_of,
    probability_logits,
    reference_model,
)

__all__ = ["TopKSpectrum", "top_eigenvalues"]

ROUNDING_FACTOR = 8.0  # rounding allowance: ROUNDING_FACTOR·√(m+1)·eps·θ_1 is added to each bound


@dataclass(frozen=True)
class TopKSpectrum:
    """The k largest eigenvalues of G at N points, with certified error bounds.

    Attributes:
        eigenvalues: ``(N, k)`` Ritz values θ, descending (units: 1/input²).
        error_bounds: ``(N, k)`` bound on ``|λ_i − θ_i|`` (see the module docstring).
        residual_norms: ``(N, k)`` ‖K u_i − θ_i u_i‖ (the gap-free bound).
        converged: ``(N, k)`` bool, ``bound ≤ tol·θ`` (or below the rounding floor).
        iterations: ``(N,)`` block iterations run for the point's chunk.
        operator_applications: ``(N,)`` vectors K was applied to (each: one vjp, one jvp).
        probs: ``(N, C)`` class probabilities.
        eigenvectors: ``(N, k, *input_shape)`` unit eigenvectors of G, or None.
    """

    eigenvalues: Tensor
    error_bounds: Tensor
    residual_norms: Tensor
    converged: Tensor
    iterations: Tensor
    operator_applications: Tensor
    probs: Tensor
    eigenvectors: Tensor | None = None

    @property
    def predicted(self) -> Tensor:
        """``(N,)`` predicted class at each point."""
        return self.probs.argmax(dim=1)

    def relative_bounds(self) -> Tensor:
        """``(N, k)`` error bound / θ (inf where θ ≤ 0)."""
        theta = self.eigenvalues
        return torch.where(theta > 0, self.error_bounds / theta, torch.full_like(theta, math.inf))

    def to_points(self, floor: float = 1e-23) -> list[dict]:
        """One JSON-able record per point (log10 eigenvalues clamped at ``floor``)."""
        logs = self.eigenvalues.double().clamp_min(floor).log10()
        return [
            {
                "log10_eigenvalues": logs[i].tolist(),
                "error_bounds": self.error_bounds[i].double().tolist(),
                "converged": bool(self.converged[i].all()),
                "operator_applications": int(self.operator_applications[i]),
                "predicted": int(self.predicted[i]),
                "max_probability": float(self.probs[i].max()),
            }
            for i in range(self.eigenvalues.shape[0])
        ]

    def summary(self, floor: float = 1e-23) -> dict:
        """Medians over points of log10 θ_1, log10 θ_k and their difference (the trace needs
        the full factor, so ``median_log10_trace`` is None)."""
        logs = self.eigenvalues.double().clamp_min(floor).log10()
        return {
            "median_log10_highest": float(logs[:, 0].median()),
            "median_log10_lowest": float(logs[:, -1].median()),
            "median_delta": float((logs[:, 0] - logs[:, -1]).median()),
            "median_log10_trace": None,
        }


class _GramOperator:
    """``K = B J Jᵀ Bᵀ`` at a batch of points; the forward graph is built once.

    ``J z`` goes through ``torch.func.linearize`` when it can trace the model: the traced
    tangent program skips the primal forward that every ``jvp`` call recomputes (on CPU that
    primal runs outside the fast convolution kernels and cost ~0.17 s per call for ResNet-18
    at 224², three times a vjp). Models it cannot trace fall back to ``jvp``.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        linearized: bool,
        reference: nn.Module | None = None,
        x_in: Tensor | None = None,
    ):
        self.model, self.x = model, x
        logits, self._vjp_fn = vjp(lambda z: logits_of(model, z), x)
        self.logits = logits.detach()
        self.acc = accumulation_dtype(x.dtype)  # p, B, the basis: float32 for low precision
        for_p = probability_logits(reference, x if x_in is None else x_in, self.logits)
        self.p = torch.softmax(for_p.to(self.acc), dim=1)
        self.sqrt_p = self.p.sqrt()
        self._jvp_fn = _linearized(model, x, self.logits) if linearized else None

    def b_apply(self, w: Tensor) -> Tensor:
        """``B w`` for w (N, C, b)."""
        return self.sqrt_p[:, :, None] * w - self.sqrt_p[:, :, None] * (self.p[:, None, :] @ w)

    def bt_apply(self, u: Tensor) -> Tensor:
        """``Bᵀ u`` for u (N, C, b)."""
        return self.sqrt_p[:, :, None] * u - self.p[:, :, None] * (self.sqrt_p[:, None, :] @ u)

    def jt_apply(self, w: Tensor) -> Tensor:
        """``Jᵀ w``: w (N, C, b) → (b, N, *shape) in the compute dtype, one vjp per column."""
        w = w.permute(2, 0, 1).contiguous().to(self.x.dtype)
        return vmap(lambda c: self._vjp_fn(c)[0])(w)

    def j_apply(self, z: Tensor) -> Tensor:
        """``J z``: z (b, N, *shape) → (N, C, b), one jvp per block member."""
        z = z.to(self.x.dtype)
        if self._jvp_fn is not None:
            return vmap(self._jvp_fn)(z).permute(1, 2, 0).to(self.acc)
        try:
            out = vmap(lambda t: jvp(self.model, (self.x,), (t,))[1])(z)
        except NotImplementedError as exc:
            raise InputError(
                f"the model uses an operation without forward-mode AD ({exc}); top_eigenvalues "
                "needs torch.func.jvp: use DataInformation(...).eigenvalues() instead"
            ) from exc
        return out.permute(1, 2, 0).to(self.acc)

    def __call__(self, u: Tensor) -> Tensor:
        return self.b_apply(self.j_apply(self.jt_apply(self.bt_apply(u))))


def _linearized(model: nn.Module, x: Tensor, logits: Tensor):
    """``z ↦ J z`` from ``torch.func.linearize``, or None when the model cannot be traced.

    Raises:
        InputError: the model's forward is not deterministic (e.g. dropout in training mode),
            so J and Jᵀ would belong to different functions.
    """
    try:
        with warnings.catch_warnings():  # torch.fx's constant folding warns on every trace
            warnings.simplefilter("ignore", UserWarning)
            again, jvp_fn = linearize(lambda z: logits_of(model, z), x)
    except Exception:  # noqa: BLE001 - tracing limits vary by model: fall back to jvp
        return None
    scale = float(logits.abs().max()) + 1.0
    if not bool(((again.detach() - logits).abs() <= 1e3 * torch.finfo(x.dtype).eps * scale).all()):
        raise InputError(
            "the model's forward pass is not deterministic (two evaluations at the same x "
            "differ: dropout or another random layer is active); top_eigenvalues needs one "
            "function: pass force_eval=True or put the model in eval mode"
        )
    return jvp_fn


def _project_out(z: Tensor, basis: Tensor) -> Tensor:
    """Two passes of classical Gram–Schmidt of z (N, C, b) against orthonormal basis (N, C, m)."""
    for _ in range(2):
        z = z - basis @ (basis.mT @ z)
    return z


def _orthonormal_block(z: Tensor, against: Tensor, op: _GramOperator, gen) -> Tensor:
    """Orthonormal columns spanning z's part orthogonal to ``against``; a column that (nearly)
    vanishes there (deflation: the Krylov space became invariant) is replaced by a fresh random
    direction in the range of B, so every point of the chunk keeps the same basis size."""
    tol = math.sqrt(torch.finfo(z.dtype).eps)
    ref = z.norm(dim=1)  # (N, b) column norms before projection
    for _ in range(4):
        z = _project_out(z, against)
        q, r = torch.linalg.qr(z)
        bad = r.diagonal(dim1=1, dim2=2).abs() <= tol * ref
        if not bool(bad.any()):
            return q
        fresh = op.b_apply(torch.randn(z.shape, generator=gen, dtype=z.dtype, device=z.device))
        fresh = fresh / fresh.norm(dim=1, keepdim=True)
        z = torch.where(bad[:, None, :], fresh, q)
        ref = torch.ones_like(ref)
    return q


def _rayleigh_ritz(q: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Ritz values (N, m) descending, coefficients (N, m, m) and residual norms (N, m) of K on
    span(q), from the basis q (N, C, m) and its image w = K q."""
    t = q.mT @ w
    theta, s = torch.linalg.eigh((t + t.mT) / 2)
    theta, s = theta.flip(-1), s.flip(-1)
    residual = w @ s - (q @ s) * theta[:, None, :]
    return theta, s, residual.norm(dim=1)


def _error_bounds(theta: Tensor, res: Tensor, k: int, complete: bool) -> Tensor:
    """``(N, k)`` bounds min(‖r_i‖, ‖r_i‖²/δ_i) with the gap δ_i of the module docstring."""
    inf = torch.full_like(theta[:, :1], math.inf)
    above = torch.cat([inf, theta[:, : k - 1] - theta[:, 1:k]], dim=1)
    upper_next = theta[:, 1 : k + 1] + res[:, 1 : k + 1]
    if upper_next.shape[1] < k:  # no Ritz value below θ_k
        fill = torch.zeros_like(inf) if complete else theta[:, k - 1 : k]
        upper_next = torch.cat([upper_next, fill], dim=1)
    gap = torch.minimum(above, theta[:, :k] - upper_next)
    r = res[:, :k]
    sharp = r**2 / gap.clamp_min(torch.finfo(r.dtype).tiny)
    rounding = ROUNDING_FACTOR * math.sqrt(res.shape[1] + 1) * torch.finfo(r.dtype).eps
    return torch.where(gap > r, torch.minimum(r, sharp), r) + rounding * theta[:, :1].abs()


def _lanczos(op: _GramOperator, k: int, block: int, tol: float, max_iter: int, gen) -> dict:
    """Block Lanczos on K at one chunk of points; returns the top-k Ritz data."""
    n, c = op.p.shape
    dim = c - 1
    null = (op.sqrt_p / op.sqrt_p.norm(dim=1, keepdim=True))[:, :, None]
    start = torch.randn(
        (n, c, min(block, dim)), generator=gen, dtype=op.p.dtype, device=op.p.device
    )
    q = _orthonormal_block(op.b_apply(start), null, op, gen)
    w = op(q)
    iterations = 1
    while True:
        complete = q.shape[2] >= dim
        if q.shape[2] > k or complete:  # the gap bound for θ_k needs θ_{k+1}
            theta, s, res = _rayleigh_ritz(q, w)
            bounds = _error_bounds(theta, res, k, complete)
            eps = torch.finfo(theta.dtype).eps
            floor = 2 * ROUNDING_FACTOR * math.sqrt(q.shape[2] + 1) * eps
            converged = bounds <= torch.maximum(tol * theta[:, :k], floor * theta[:, :1].abs())
            if bool(converged.all()) or complete or iterations >= max_iter:
                break
        width = min(block, dim - q.shape[2])
        last = w[:, :, -block:][:, :, :width]
        fresh = _orthonormal_block(last, torch.cat([null, q], dim=2), op, gen)
        q = torch.cat([q, fresh], dim=2)
        w = torch.cat([w, op(fresh)], dim=2)
        iterations += 1
    return {
        "theta": theta[:, :k],
        "bounds": bounds,
        "res": res[:, :k],
        "converged": converged,
        "iterations": iterations,
        "applications": q.shape[2],
        "ritz": q @ s[:, :, :k],
    }


def _eigenvectors(op: _GramOperator, ritz: Tensor) -> Tensor:
    """Unit eigenvectors of G, ``Aᵀu/‖Aᵀu‖`` for the Ritz vectors u (N, C, k) → (N, k, *shape)."""
    v = op.jt_apply(op.bt_apply(ritz)).movedim(0, 1).to(op.acc)  # (N, k, *shape)
    norms = v.flatten(2).norm(dim=2).clamp_min(torch.finfo(v.dtype).tiny)
    return v / norms.reshape(*norms.shape, *([1] * (v.dim() - 2)))


def _check_arguments(k: int, tol: float, block_size: int, max_iter: int, chunk_size) -> None:
    check_positive_int(k, "k")
    if not tol > 0:
        raise InputError(f"tol must be > 0 (got {tol}); e.g. 1e-4 for four digits")
    check_positive_int(
        block_size,
        "block_size",
        "; it must be at least the largest multiplicity among the top-k eigenvalues, e.g. 3",
    )
    if max_iter < 1:
        raise InputError(f"max_iter must be >= 1 (got {max_iter})")
    if chunk_size is not None and chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1 or None (got {chunk_size})")


def top_eigenvalues(
    model: nn.Module,
    x: Tensor,
    k: int,
    *,
    tol: float = 1e-4,
    block_size: int = 3,
    max_iter: int = 100,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    eigenvectors: bool = False,
    seed: int = 0,
    force_eval: bool = True,
    linearize: bool = True,
    attention: str = "auto",
    probs_model: nn.Module | None = None,
) -> TopKSpectrum:
    """The k largest eigenvalues of ``G(x) = Jᵀ M(p) J`` at each point, matrix-free.

    Cost per point: ``operator_applications`` vjps and as many jvps (``block_size`` per block
    iteration; about 3k for ten eigenvalues of a 1000-class ResNet at tol 1e-3), against C vjps
    for the exact factor; memory O(C·operator_applications) besides the model's forward graph
    and its linearisation. See the module docstring for the algorithm and the error statement.

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``, samples independent
            (eval mode; its flags are restored afterwards).
        x: points ``(N, *shape)``.
        k: number of eigenvalues, ``1 <= k <= C - 1`` (the rank of G is at most C − 1).
        tol: stop when every bound ≤ tol·θ (or below 100·eps·θ_1, the rounding floor).
        block_size: vectors per block iteration. It must be at least the largest multiplicity
            of an eigenvalue among the top k (a block Krylov space holds at most block_size
            eigenvectors of one eigenvalue); narrower blocks need fewer products in total,
            wider ones batch better.
        max_iter: at most this many block iterations once the basis holds k + 1 vectors
            (unconverged pairs are flagged).
        dtype: compute dtype (the model is copied when it differs); float64 to certify.
            bfloat16 / float16: products in low precision, the iteration in float32 (see
            the module docstring for what the bounds then cover).
        chunk_size: points per batch through the model (bounds memory; default all).
        eigenvectors: also return the unit eigenvectors (k more vjps per point).
        seed: seed of the random start block (results are reproducible).
        force_eval: evaluate in eval mode (default); ``False`` keeps the model's mode.
        linearize: compute ``J z`` with ``torch.func.linearize`` (default; falls back to
            ``jvp`` when the model cannot be traced); ``False`` always uses ``jvp``.
        attention: route of scaled-dot-product attention
            (:func:`~leafscope.information.jacobian.attention_route`).
        probs_model: in low precision, the float32 model whose logits give p (default: the
            model cast to float32).

    Returns:
        :class:`TopKSpectrum` (tensors on x's device, in the compute dtype).

    Examples:
        >>> import torch
        >>> from leafscope.testing import tiny_cnn
        >>> model, x = tiny_cnn(), torch.rand(2, 1, 8, 8)
        >>> spec = top_eigenvalues(model, x, 2, dtype=torch.float64)
        >>> spec.eigenvalues.shape, bool(spec.converged.all())
        (torch.Size([2, 2]), True)
    """
    _check_arguments(k, tol, block_size, max_iter, chunk_size)
    check_inputs(x)
    original, x_in = model, x
    if dtype is not None:
        check_compute_dtype(dtype)
        model, x = cast_model(model, dtype), x.to(dtype)
    reference = reference_model(original, x.dtype, probs_model)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    step = chunk_size or x.shape[0]
    parts: list[dict] = []
    with (
        eval_mode(model, force_eval),
        constant_parameters(model),
        attention_route(attention, x.device, forward_ad=True),
    ):
        for start in range(0, x.shape[0], step):
            op = _GramOperator(
                model, x[start : start + step], linearize, reference, x_in[start : start + step]
            )
            if k > op.p.shape[1] - 1:
                c = op.p.shape[1]
                raise InputError(
                    f"k={k} exceeds C-1={c - 1}: G has rank at most C-1 for a {c}-class model; "
                    f"ask for k <= {c - 1}"
                )
            block = min(block_size, op.p.shape[1] - 1)
            part = _lanczos(op, k, block, tol, max_iter, gen)
            part["probs"] = op.p
            part["vectors"] = _eigenvectors(op, part["ritz"]) if eigenvectors else None
            part["n"] = op.p.shape[0]
            parts.append({key: _detach(value) for key, value in part.items()})
            del op
    return _assemble(parts, x.device)


def _detach(value):
    return value.detach() if isinstance(value, Tensor) else value


def _assemble(parts: list[dict], device: torch.device) -> TopKSpectrum:
    def cat(key: str) -> Tensor:
        return torch.cat([part[key] for part in parts])

    def per_point(key: str) -> Tensor:
        return torch.cat([torch.full((p["n"],), p[key], device=device) for p in parts])

    return TopKSpectrum(
        eigenvalues=cat("theta"),
        error_bounds=cat("bounds"),
        residual_norms=cat("res"),
        converged=cat("converged"),
        iterations=per_point("iterations"),
        operator_applications=per_point("applications"),
        probs=cat("probs"),
        eigenvectors=cat("vectors") if parts[0]["vectors"] is not None else None,
    )
