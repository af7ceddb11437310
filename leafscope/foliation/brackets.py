"""Involutivity of the distribution D = span{∇ p_a} by Lie brackets (theory §2).

Fields ``X_a = ∇ p_a`` (a = 1..C; Σ_a X_a = 0). Brackets
``[X_a, X_b] = DX_b·X_a − DX_a·X_b``, where ``DX_b·v = H(p_b) v`` is a Hessian-vector product
computed forward-over-reverse (``torch.func.jvp`` of ``torch.func.jacrev``): one jvp of the
C-row Jacobian in the direction X_a gives ``DX_b·X_a`` for every b at once, so a point costs C
jvps of a Jacobian and never forms an n×n Hessian.

The distribution is involutive at x when the brackets stay in D, i.e. when the stacked matrix
``[X_1..X_C ; [X_a, X_b] (a<b)]`` has the same rank as ``[X_1..X_C]`` (at most C−1).
The ceiling is ``(C−1) + (C−1)(C−2)/2`` (45 for C = 10; brackets with the dependent field X_C
add nothing). Ranks use singular values in float64 with
a relative tolerance; the result keeps the singular values and the ranks at several tolerances
because the count is tolerance-sensitive (sigmoid brackets are tiny).

The same test runs in parameter space (the Fisher distribution ``w ↦ span{∇w p_a(x, w)}``) with
:func:`fisher_involutivity`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vmap

from leafscope.errors import InputError
from leafscope.foliation._common import check_count, model_in
from leafscope.information import check_inputs, eval_mode, logits_of

__all__ = [
    "RTOL_GRID",
    "InvolutivityResult",
    "bracket_pairs",
    "fisher_involutivity",
    "involutivity",
    "involutivity_result",
    "lie_brackets",
    "parameter_lie_brackets",
]

RTOL_GRID = (1e-13, 1e-10, 1e-8, 1e-6, 1e-4)


def bracket_pairs(num_classes: int) -> list[tuple[int, int]]:
    """The pairs ``(a, b)``, ``a < b``, in the order of the bracket rows."""
    return [(a, b) for a in range(num_classes) for b in range(a + 1, num_classes)]


def _brackets_from_t(t: Tensor) -> Tensor:
    """``t[..., a, b, :] = DX_b·X_a`` → brackets ``(..., C(C-1)/2, n)`` (bracket_pairs order)."""
    c = t.shape[-2]
    a_idx, b_idx = torch.triu_indices(c, c, offset=1)
    return t[..., a_idx, b_idx, :] - t[..., b_idx, a_idx, :]


def _fields_and_t(prob_fn):
    """For ``prob_fn: R^n → R^C``: a function ``z ↦ (X (C, n), T (C, C, n))``."""
    jac = jacrev(prob_fn)

    def one(z: Tensor) -> tuple[Tensor, Tensor]:
        fields = jac(z)
        t = vmap(lambda v: jvp(jac, (z,), (v,))[1])(fields)
        return fields, t

    return one


def lie_brackets(
    model: nn.Module, x: Tensor, *, chunk_size: int | None = 4, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """Fields ``X_a = ∇x p_a`` and their Lie brackets at each point.

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)`` (eval mode is forced).
        x: points ``(N, *shape)``.
        chunk_size: points per vectorised chunk (bounds memory).
        dtype: computation dtype (float64 recommended; the model is copied when it differs).

    Returns:
        ``(fields, brackets)``: ``(N, C, n)`` and ``(N, C(C-1)/2, n)``, rows in
        :func:`bracket_pairs` order, ``n = prod(shape)``.
    """
    check_inputs(x, "points")
    model = model_in(model, dtype)
    shape = tuple(x.shape[1:])
    flat = x.detach().to(dtype).reshape(x.shape[0], -1)
    with eval_mode(model):
        with torch.no_grad():
            logits_of(model, flat[:1].reshape(1, *shape))

        def prob(z: Tensor) -> Tensor:
            return torch.softmax(model(z.reshape(1, *shape)), dim=1)[0]

        fields, t = vmap(_fields_and_t(prob), chunk_size=chunk_size)(flat)
    return fields.detach(), _brackets_from_t(t).detach()


def parameter_lie_brackets(
    model: nn.Module,
    x: Tensor,
    *,
    parameters: list[str] | None = None,
    chunk_size: int | None = 1,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """Fields ``∇w p_a(x, w)`` in parameter space and their brackets, per point ``x``.

    Args:
        model: classifier (keep it small: the stacked matrix is ``(C + C(C-1)/2) × P``).
        parameters: names of the parameters used as coordinates (default: all trainable); the
            others are held fixed.
        x: points ``(N, *shape)``.
        chunk_size: points per vectorised chunk.
        dtype: computation dtype.

    Returns:
        ``(fields, brackets)``: ``(N, C, P)`` and ``(N, C(C-1)/2, P)``.
    """
    check_inputs(x, "points")
    model = model_in(model, dtype)
    named = dict(model.named_parameters())
    names = [n for n, p in named.items() if p.requires_grad] if parameters is None else parameters
    unknown = [n for n in names if n not in named]
    if unknown:
        raise InputError(f"unknown parameter names {unknown}: valid names are {sorted(named)}")
    if not names:
        raise InputError(
            "the model has no trainable parameters: nothing to test in parameter space"
        )
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in names}
    buffers = dict(model.named_buffers())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    w0 = torch.cat([params[n].reshape(-1) for n in names])
    xs = x.detach().to(dtype)

    def unflatten(w: Tensor) -> dict[str, Tensor]:
        parts = torch.split(w, sizes)
        return {n: part.reshape(s) for n, part, s in zip(names, parts, shapes, strict=True)}

    with eval_mode(model):
        with torch.no_grad():
            logits_of(model, xs[:1])

        def per_point(xi: Tensor) -> tuple[Tensor, Tensor]:
            def prob(w: Tensor) -> Tensor:
                state = {**frozen, **unflatten(w), **buffers}
                return torch.softmax(functional_call(model, state, (xi.unsqueeze(0),)), dim=1)[0]

            return _fields_and_t(prob)(w0)

        fields, t = vmap(per_point, chunk_size=chunk_size)(xs)
    return fields.detach(), _brackets_from_t(t).detach()


@dataclass
class InvolutivityResult:
    """Ranks of ``D`` and of ``span{D, [D, D]}`` at N points.

    Attributes:
        space: ``"input"`` (data domain) or ``"parameter"`` (Fisher distribution).
        inputs: what the points are (e.g. ``"noise"``, ``"data"``).
        rtol: the relative tolerance of the reported ranks (σ > rtol·σ_max is counted).
        dim_distribution: ``(N,)`` rank of the C fields.
        dim_with_brackets: ``(N,)`` rank of fields and brackets stacked.
        fields_singular_values: ``(N, C)`` descending.
        singular_values: ``(N, C + C(C-1)/2)`` of the stacked matrix, descending.
        rank_by_rtol: ``{rtol: mean dim_with_brackets}`` on :data:`RTOL_GRID`.
        largest_gap: per point, ``(index k, log10 σ_k/σ_{k+1})`` of the largest consecutive drop
            in the stacked singular values (k counted from 1).
        ceiling: ``(C−1) + (C−1)(C−2)/2`` (the rank bound, since Σ_a X_a = 0).
        seconds: wall-clock time of the computation.
        meta: free-form description (checkpoint, activation, ...).
    """

    space: str
    inputs: str
    rtol: float
    dim_distribution: list[int]
    dim_with_brackets: list[int]
    fields_singular_values: Tensor
    singular_values: Tensor
    rank_by_rtol: dict[str, float]
    largest_gap: list[tuple[int, float]]
    ceiling: int
    seconds: float
    meta: dict = field(default_factory=dict)

    @property
    def mean_dim_distribution(self) -> float:
        return sum(self.dim_distribution) / len(self.dim_distribution)

    @property
    def mean_dim_with_brackets(self) -> float:
        return sum(self.dim_with_brackets) / len(self.dim_with_brackets)

    def to_json(self) -> dict:
        return {
            "space": self.space,
            "inputs": self.inputs,
            "rtol": self.rtol,
            "ceiling": self.ceiling,
            "mean_dim_distribution": self.mean_dim_distribution,
            "mean_dim_with_brackets": self.mean_dim_with_brackets,
            "rank_by_rtol": self.rank_by_rtol,
            "seconds": self.seconds,
            "meta": self.meta,
            "points": [
                {
                    "dim_distribution": self.dim_distribution[i],
                    "dim_with_brackets": self.dim_with_brackets[i],
                    "largest_gap_index": self.largest_gap[i][0],
                    "largest_gap_log10": self.largest_gap[i][1],
                    "fields_singular_values": self.fields_singular_values[i].tolist(),
                    "singular_values": self.singular_values[i].tolist(),
                }
                for i in range(len(self.dim_distribution))
            ],
        }


def _rank(s: Tensor, rtol: float) -> Tensor:
    return (s > rtol * s[:, :1]).sum(dim=1)


def _summarise(fields, brackets, rtol, space, inputs, seconds, meta) -> InvolutivityResult:
    s_fields = torch.linalg.svdvals(fields)
    s_all = torch.linalg.svdvals(torch.cat([fields, brackets], dim=1))
    return involutivity_result(
        s_fields, s_all, rtol=rtol, num_classes=fields.shape[1], space=space, inputs=inputs,
        seconds=seconds, meta=meta,
    )  # fmt: skip


def involutivity_result(
    fields_singular_values: Tensor,
    singular_values: Tensor,
    *,
    rtol: float,
    num_classes: int,
    space: str = "input",
    inputs: str = "given",
    seconds: float = 0.0,
    meta: dict | None = None,
) -> InvolutivityResult:
    """The :class:`InvolutivityResult` of given singular values (e.g. rows of several shards).

    Args:
        fields_singular_values: ``(N, k)`` of the C fields at each point, descending.
        singular_values: ``(N, m)`` of fields and brackets stacked, descending.
        rtol: relative rank tolerance.
        num_classes: C (sets the ceiling).
        space, inputs, seconds, meta: stored as given.
    """
    rtol = _check_rtol(rtol)
    s_fields, s_all = fields_singular_values, singular_values
    c = int(num_classes)
    logs = torch.log10(s_all.clamp_min(1e-300))
    drops = logs[:, :-1] - logs[:, 1:]
    k = drops.argmax(dim=1)
    gaps = [(int(ki) + 1, float(drops[i, ki])) for i, ki in enumerate(k)]
    return InvolutivityResult(
        space=space,
        inputs=inputs,
        rtol=rtol,
        dim_distribution=_rank(s_fields, rtol).tolist(),
        dim_with_brackets=_rank(s_all, rtol).tolist(),
        fields_singular_values=s_fields.cpu(),
        singular_values=s_all.cpu(),
        rank_by_rtol={f"{r:g}": float(_rank(s_all, r).double().mean()) for r in RTOL_GRID},
        largest_gap=gaps,
        ceiling=(c - 1) + (c - 1) * (c - 2) // 2,
        seconds=seconds,
        meta=dict(meta or {}),
    )


def _check_rtol(rtol: float) -> float:
    if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise InputError(f"rtol must be in (0, 1) (got {rtol!r}); 1e-10 suits float64")
    return float(rtol)


def involutivity(
    model: nn.Module,
    x: Tensor,
    *,
    rtol: float = 1e-10,
    inputs: str = "given",
    chunk_size: int | None = 4,
    meta: dict | None = None,
) -> InvolutivityResult:
    """Involutivity test of ``D_x = span{∇x p_a}`` at the points ``x`` (float64).

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``.
        x: points ``(N, *shape)`` (e.g. uniform noise in [0, 1], as in the published table).
        rtol: singular values above ``rtol·σ_max`` count toward a rank (default 1e-10).
        inputs: a label for the points, stored in the result.
        chunk_size: points per vectorised chunk.
        meta: extra description stored in the result.

    Returns:
        :class:`InvolutivityResult` (ReLU networks: dim_with_brackets = dim_distribution).
    """
    rtol = _check_rtol(rtol)
    t0 = time.perf_counter()
    fields, brackets = lie_brackets(model, x, chunk_size=chunk_size)
    return _summarise(fields, brackets, rtol, "input", inputs, time.perf_counter() - t0, meta)


def fisher_involutivity(
    model: nn.Module,
    x: Tensor,
    *,
    rtol: float = 1e-10,
    inputs: str = "given",
    chunk_size: int | None = 1,
    max_parameters: int = 200_000,
    parameters: list[str] | None = None,
    meta: dict | None = None,
) -> InvolutivityResult:
    """Involutivity test of the Fisher distribution ``span{∇w p_a(x, w)}`` in parameter space.

    Args:
        model: a small classifier (at most ``max_parameters`` trainable parameters).
        x: points ``(N, *shape)``; each point gives one distribution on parameter space.
        rtol: relative rank tolerance.
        inputs: a label for the points.
        chunk_size: points per vectorised chunk.
        max_parameters: refuse more coordinates (the stacked matrix is (C + C(C-1)/2) × P).
        parameters: parameter names used as coordinates (default: all trainable).
        meta: extra description.

    Returns:
        :class:`InvolutivityResult` with ``space="parameter"``.
    """
    rtol = _check_rtol(rtol)
    check_count(max_parameters, "max_parameters")
    named = dict(model.named_parameters())
    chosen = [n for n, p in named.items() if p.requires_grad] if parameters is None else parameters
    count = sum(named[n].numel() for n in chosen if n in named)
    if count > max_parameters:
        raise InputError(
            f"the model has {count} trainable parameters, above max_parameters={max_parameters}: "
            "use a smaller model, fewer parameters (e.g. the last layer) or raise max_parameters"
        )
    t0 = time.perf_counter()
    fields, brackets = parameter_lie_brackets(
        model, x, parameters=parameters, chunk_size=chunk_size
    )
    return _summarise(fields, brackets, rtol, "parameter", inputs, time.perf_counter() - t0, meta)
