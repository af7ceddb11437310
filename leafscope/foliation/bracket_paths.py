"""Iterated Lie brackets of D and horizontal paths that also move along bracket directions.

Where D = span{X_a} is not involutive and its iterated brackets span R^n, the Chow–Rashevskii
theorem joins any two points by a horizontal path (theory §2). Two tools:

- :func:`bracket_levels` / :func:`bracket_span`: the vectors of levels 1–4 at a point,
  ``L1 = {X_a}``, ``L2 = {[X_a, X_b]}``, ``L3 = {[X_c, [X_a, X_b]]}``,
  ``L4 = {[X_d, [X_c, [X_a, X_b]]]}``, and the rank of each cumulative stack with its singular
  values. Brackets are derivatives along directions (``torch.func.jvp``), never full Hessians;
  each level differentiates the function of the level below once more (:func:`next_level`).
- :func:`bracket_path` / :func:`bracket_paths`: a path finder. While the way to the end has a
  part inside D (``‖P_D g‖/‖g‖ ≥ min_tangent``) it steps along it (length ≤ ``step`` and ≤
  ``‖P_D g‖``, so it does not overshoot); otherwise it runs a commutator loop
  ``+εU_a, +εU_b, −εU_a, −εU_b`` (second-order legs), which moves by ``ε²[U_a, U_b] + O(ε³)``,
  for the pair whose bracket best aligns with the part of ``g = end − x`` orthogonal to D.
  A loop is kept only if it brings x closer to the end (ε halves otherwise).

Fields are functions ``z (n,) ↦ (m, n)`` that torch.func can differentiate. For a classifier,
:func:`model_fields` gives ``X_a = ∇x p_a`` (a < C − 1: Σ_a X_a = 0 makes the last redundant),
optionally normalised to unit length (the same distribution; brackets change by terms in D and
a positive factor).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.func import jacrev, jvp, vmap

from leafscope.dtypes import check_dtype
from leafscope.errors import InputError
from leafscope.foliation._common import (
    check_box,
    check_count,
    check_pair,
    check_positive,
    clamp_box,
    model_in,
)
from leafscope.foliation.brackets import RTOL_GRID, _brackets_from_t
from leafscope.foliation.regions import orthonormal_rows
from leafscope.information import check_inputs, eval_mode

__all__ = [
    "BracketPathConfig",
    "BracketPathResult",
    "BracketSpanResult",
    "FieldFn",
    "bracket_levels",
    "bracket_path",
    "bracket_paths",
    "bracket_span",
    "commutator_loop",
    "field_brackets",
    "model_fields",
    "next_level",
]

FieldFn = Callable[[Tensor], Tensor]


def model_fields(
    model: nn.Module, input_shape: tuple[int, ...], *, count: int | None = None, normalize=False
) -> FieldFn:
    """``z (n,) ↦ (m, n)``: the fields ``X_a = ∇x p_a`` of a classifier at one point.

    Args:
        model: classifier mapping ``(1, *input_shape)`` to logits (use it in eval mode).
        input_shape: shape of one input.
        count: keep the first ``count`` fields (default: all C; C − 1 span the same D).
        normalize: divide each field by its norm.
    """

    def prob(z: Tensor) -> Tensor:
        return torch.softmax(model(z.reshape(1, *input_shape)), dim=1)[0]

    jac = jacrev(prob)

    def fields(z: Tensor) -> Tensor:
        x = jac(z)
        x = x if count is None else x[:count]
        return x / x.norm(dim=1, keepdim=True) if normalize else x

    return fields


def _derivatives(field_fn: FieldFn, z: Tensor, directions: Tensor) -> Tensor:
    """``out[k] = DX·directions[k]`` for all fields: ``(k, m, n)``."""
    return vmap(lambda v: jvp(field_fn, (z,), (v,))[1])(directions)


def field_brackets(field_fn: FieldFn, z: Tensor) -> tuple[Tensor, Tensor]:
    """Fields ``(m, n)`` and brackets ``[X_a, X_b] = DX_b·X_a − DX_a·X_b`` ``(m(m−1)/2, n)``
    at one point ``z`` (n,), rows in :func:`~leafscope.foliation.bracket_pairs` order."""
    fields = field_fn(z)
    return fields, _brackets_from_t(_derivatives(field_fn, z, fields))


def next_level(
    field_fn: FieldFn,
    rows_fn: FieldFn,
    z: Tensor,
    *,
    rows: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Brackets of every field with every row of ``rows_fn``, at one point ``z`` (n,).

    Args:
        field_fn: the fields ``z ↦ X (m, n)``.
        rows_fn: vector fields ``z ↦ Y (R, n)`` (e.g. the brackets of the level below).
        z: the point.
        rows: ``rows_fn(z)`` when already computed.
        chunk_size: directions differentiated at once (None: all; smaller saves memory).

    Returns:
        ``(m·R, n)``: row ``d·R + r`` is ``[X_d, Y_r] = DY_r·X_d − DX_d·Y_r``.
    """
    fields = field_fn(z)
    rows = rows_fn(z) if rows is None else rows
    d_y = vmap(lambda v: jvp(rows_fn, (z,), (v,))[1], chunk_size=chunk_size)(fields)  # (m, R, n)
    d_x = vmap(lambda v: jvp(field_fn, (z,), (v,))[1], chunk_size=chunk_size)(rows)  # (R, m, n)
    return (d_y - d_x.transpose(0, 1)).reshape(-1, z.numel())


def bracket_levels(
    field_fn: FieldFn, z: Tensor, levels: int = 3, *, chunk_size: int | None = None
) -> list[Tensor]:
    """The vectors added at each level, at one point ``z`` (n,).

    Levels: ``L1 = {X_a}`` (m rows), ``L2 = {[X_a, X_b]}, a < b`` (P = m(m−1)/2 rows), and for
    k ≥ 3 the right-normed brackets ``L_k = {[X_d, Y] : Y ∈ L_{k−1}}`` (m·rows of L_{k−1}):
    ``[X_c, [X_a, X_b]]`` at level 3, ``[X_d, [X_c, [X_a, X_b]]]`` at level 4 (all of them;
    right-normed brackets span the free Lie algebra's degree-k part, so nothing is lost).
    Each level differentiates the function of the level below once more (``jvp``).

    Args:
        field_fn: the fields ``z ↦ (m, n)``.
        z: the point.
        levels: 1, 2, 3 or 4.
        chunk_size: directions differentiated at once (None: all; level 4 of a CNN wants ~8).

    Returns:
        ``[L1 (m, n), L2 (P, n), L3 (m·P, n), L4 (m²·P, n)]`` (first ``levels`` entries); row
        ``c·P + p`` of L3 is ``[X_c, B_p]`` with ``B_p`` the p-th bracket, row ``d·mP + r`` of
        L4 is ``[X_d, L3_r]``.
    """
    if levels not in (1, 2, 3, 4):
        raise InputError(f"levels must be 1, 2, 3 or 4 (got {levels!r})")
    fields = field_fn(z)
    if levels == 1:
        return [fields]

    def level2(w: Tensor) -> Tensor:
        return field_brackets(field_fn, w)[1]

    out = [fields, level2(z)]
    if levels == 2:
        return out

    def level3(w: Tensor) -> Tensor:
        return next_level(field_fn, level2, w, chunk_size=chunk_size)

    out.append(next_level(field_fn, level2, z, rows=out[1], chunk_size=chunk_size))
    if levels == 4:
        out.append(next_level(field_fn, level3, z, rows=out[2], chunk_size=chunk_size))
    return out


@dataclass
class BracketSpanResult:
    """Rank of the stacked vectors of levels 1..L at N points (float64).

    Attributes:
        rtol: relative tolerance of the ranks (σ > rtol·σ_max counts).
        rows: number of stacked vectors per level (cumulative; at most n singular values).
        rank: per level, the ``(N,)`` ranks.
        singular_values: per level, ``(N, rows)`` descending.
        rank_by_rtol: per level, ``{rtol: mean rank}`` on :data:`RTOL_GRID`.
        largest_gap: per level, per point ``(k, log10 σ_k/σ_{k+1})`` of the largest drop.
        dim: input dimension n.
        seconds: wall-clock time.
        meta: free-form description.
    """

    rtol: float
    rows: list[int]
    rank: list[list[int]]
    singular_values: list[Tensor]
    rank_by_rtol: list[dict[str, float]]
    largest_gap: list[list[tuple[int, float]]]
    dim: int
    seconds: float
    meta: dict = field(default_factory=dict)

    def mean_rank(self) -> list[float]:
        return [sum(r) / len(r) for r in self.rank]

    def to_json(self) -> dict:
        return {
            "rtol": self.rtol,
            "dim": self.dim,
            "rows": self.rows,
            "mean_rank": self.mean_rank(),
            "rank": self.rank,
            "rank_by_rtol": self.rank_by_rtol,
            "largest_gap": [[list(g) for g in lev] for lev in self.largest_gap],
            "singular_values": [s.tolist() for s in self.singular_values],
            "seconds": self.seconds,
            "meta": self.meta,
        }


def _gaps(s: Tensor) -> list[tuple[int, float]]:
    logs = torch.log10(s.clamp_min(1e-300))
    drops = logs[:, :-1] - logs[:, 1:]
    k = drops.argmax(dim=1)
    return [(int(ki) + 1, float(drops[i, ki])) for i, ki in enumerate(k)]


def bracket_span(
    model: nn.Module,
    x: Tensor,
    *,
    levels: int = 3,
    rtol: float = 1e-10,
    count: int | None = None,
    chunk_size: int | None = None,
    meta: dict | None = None,
) -> BracketSpanResult:
    """Rank of ``D``, ``D + [D, D]``, ``… + [D, [D, D]]`` and ``… + [D, [D, [D, D]]]`` at each
    point (float64).

    Args:
        model: classifier mapping ``(N, *shape)`` to logits ``(N, C)``.
        x: points ``(N, *shape)``.
        levels: 1, 2, 3 or 4.
        rtol: relative rank tolerance.
        count: fields used (default C − 1; all C span the same D).
        chunk_size: directions differentiated at once (None: all; level 4 on a CNN: ~8).
        meta: stored in the result (``seconds_per_point`` is added).

    Returns:
        :class:`BracketSpanResult`; with m fields and P = m(m−1)/2 the rows are m, m + P,
        m + P + mP and m + P + mP + m²P. The free Lie algebra bounds the new directions of
        level 3 by (m³ − m)/3 and of level 4 by (m⁴ − m²)/4 (Witt's formula; Jacobi's identity
        makes the other rows dependent).
    """
    check_inputs(x, "points")
    if not 0 < rtol < 1:
        raise InputError(f"rtol must be in (0, 1) (got {rtol!r}); 1e-10 suits float64")
    t0 = time.perf_counter()
    model = model_in(model, torch.float64)
    shape = tuple(x.shape[1:])
    flat = x.detach().to(torch.float64).reshape(x.shape[0], -1)
    per_level: list[list[Tensor]] = [[] for _ in range(levels)]
    counts: list[int] = []
    seconds: list[float] = []
    with eval_mode(model), torch.no_grad():  # torch.func still differentiates in x
        c = model(flat[:1].reshape(1, *shape)).shape[1]
        fn = model_fields(model, shape, count=count if count is not None else c - 1)
        for z in flat:
            t1 = time.perf_counter()
            stack = bracket_levels(fn, z, levels, chunk_size=chunk_size)
            seconds.append(time.perf_counter() - t1)
            counts = [sum(t.shape[0] for t in stack[: k + 1]) for k in range(levels)]
            for lev in range(levels):
                rows = torch.cat(stack[: lev + 1], dim=0).detach()
                per_level[lev].append(torch.linalg.svdvals(rows))
    svals = [torch.stack(s) for s in per_level]

    def rank(s: Tensor, r: float) -> list[int]:
        return (s > r * s[:, :1]).sum(dim=1).tolist()

    return BracketSpanResult(
        rtol=rtol,
        rows=counts,
        rank=[rank(s, rtol) for s in svals],
        singular_values=svals,
        rank_by_rtol=[{f"{r:g}": sum(rank(s, r)) / s.shape[0] for r in RTOL_GRID} for s in svals],
        largest_gap=[_gaps(s) for s in svals],
        dim=flat.shape[1],
        seconds=time.perf_counter() - t0,
        meta={**(meta or {}), "seconds_per_point": seconds},
    )


def _leg(field_fn: FieldFn, x: Tensor, a: int, h: float, box) -> Tensor:
    """Flow along field a for time h: one midpoint (second-order) step, then the box."""
    mid = x + 0.5 * h * field_fn(x)[a]
    return clamp_box(x + h * field_fn(mid)[a], box)


def commutator_loop(field_fn: FieldFn, x: Tensor, a: int, b: int, eps: float, box=None) -> Tensor:
    """The loop ``+εX_a, +εX_b, −εX_a, −εX_b`` from ``x`` (n,): it ends at
    ``x + ε²[X_a, X_b](x) + O(ε³)`` (``[X, Y] = DY·X − DX·Y``). Legs are midpoint steps
    (8 field evaluations); ``box`` clamps after every leg."""
    for field_index, sign in ((a, 1.0), (b, 1.0), (a, -1.0), (b, -1.0)):
        x = _leg(field_fn, x, field_index, sign * eps, box)
    return x


@dataclass
class BracketPathConfig:
    """Settings of :func:`bracket_path` (lengths in input units).

    Attributes:
        step: longest step inside D (a step is also at most ``‖P_D(end − x)‖``).
        loop_step: longest leg ε of a commutator loop.
        threshold: stop when ``‖x − end‖ ≤ threshold``.
        max_steps: stop after this many moves (steps inside D plus loops).
        min_tangent: run a loop when ``‖P_D g‖ / ‖g‖`` is below this.
        loops: False disables loops (a leaf-only path with the same steps, for comparison).
        candidates: pairs tried per loop, best aligned first.
        halvings: ε is halved this many times before the next candidate is tried.
        box: clamp every point to ``[low, high]`` (None: no clamp).
        rtol: relative rank tolerance of span{X_a} (defines D_x).
        refresh: the brackets (the costly part: m² Hessian-vector products) are recomputed
            every ``refresh`` loops; in between the last ones rank the candidates (a loop moves
            x by ~ε², so they barely change). A loop is still kept only if it brings x closer,
            and when none of the stale candidates does, fresh brackets are tried at once.
    """

    step: float = 0.1
    loop_step: float = 0.3
    threshold: float = 1.0
    max_steps: int = 300
    min_tangent: float = 0.05
    loops: bool = True
    candidates: int = 3
    halvings: int = 2
    box: tuple[float, float] | None = (0.0, 1.0)
    rtol: float = 1e-8
    refresh: int = 1

    def check(self) -> BracketPathConfig:
        """Validate every field; return self. Raises :class:`InputError` naming the bad field."""
        check_positive(self.step, "step")
        check_positive(self.loop_step, "loop_step")
        if not (isinstance(self.threshold, (int, float)) and self.threshold >= 0):
            raise InputError(f"threshold must be a number >= 0 (got {self.threshold!r})")
        check_count(self.max_steps, "max_steps", 0)
        if not (isinstance(self.min_tangent, (int, float)) and 0 <= self.min_tangent <= 1):
            raise InputError(f"min_tangent must be in [0, 1] (got {self.min_tangent!r})")
        check_count(self.candidates, "candidates")
        check_count(self.halvings, "halvings", 0)
        self.box = check_box(self.box)
        check_positive(self.rtol, "rtol")
        check_count(self.refresh, "refresh")
        return self

    def to_json(self) -> dict:
        out = asdict(self)
        out["box"] = list(self.box) if self.box is not None else None
        return out


@dataclass
class _Path:
    distance: list[float] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)
    tangent: list[float] = field(default_factory=list)
    stop_reason: str = "max_steps"


def _best_loops(m: int, brackets: Tensor, basis: Tensor, gap: Tensor, k: int):
    """Candidate loops ``(a, b, predicted move per ε², alignment)`` of m fields, best aligned
    first: the brackets' parts outside D against the part of ``gap`` outside D."""
    perp_gap = gap - basis.T @ (basis @ gap)
    perp_b = brackets - (brackets @ basis.T) @ basis
    norms = perp_b.norm(dim=1).clamp_min(1e-300)
    along = perp_b @ (perp_gap / perp_gap.norm().clamp_min(1e-300))
    order = torch.argsort(along.abs() / norms, descending=True)[:k]
    pairs = [(a, b) for a in range(m) for b in range(a + 1, m)]
    out = []
    for p in order.tolist():
        a, b = pairs[p]
        a, b = (a, b) if along[p] > 0 else (b, a)  # swapping the legs flips the bracket
        out.append((a, b, float(along[p].abs()), float(along[p].abs() / norms[p])))
    return out, float(perp_gap.norm())


def _try_loop(field_fn, x, end, dist, basis, cache: dict, cfg) -> Tensor | None:
    """A kept loop from ``x`` or None; ``cache`` holds the brackets and their age in loops."""
    fresh = cache.get("age", cfg.refresh) >= cfg.refresh
    if fresh:
        cache["brackets"] = field_brackets(field_fn, x)[1].detach()
        cache["age"] = 0
    cache["age"] += 1
    found = _loop_candidates(field_fn, x, end, dist, basis, cache["brackets"], cfg)
    if found is None and not fresh:
        cache["age"] = cfg.refresh
        return _try_loop(field_fn, x, end, dist, basis, cache, cfg)
    return found


def _loop_candidates(field_fn, x, end, dist, basis, brackets, cfg) -> Tensor | None:
    m = (1 + math.isqrt(1 + 8 * brackets.shape[0])) // 2  # brackets has m(m−1)/2 rows
    cands, perp = _best_loops(m, brackets, basis, end - x, cfg.candidates)
    for a, b, rate, _ in cands:
        if rate <= 0:
            continue
        eps = min(cfg.loop_step, math.sqrt(perp / rate))
        for _ in range(cfg.halvings + 1):
            cand = commutator_loop(field_fn, x, a, b, eps, cfg.box)
            if (end - cand).norm() < dist:
                return cand
            eps *= 0.5
    return None


def bracket_path(field_fn: FieldFn, start: Tensor, end: Tensor, config=None) -> tuple:
    """One path from ``start`` to ``end`` (both (n,)) for the distribution of ``field_fn``.

    Returns:
        ``(x_final (n,), record)``: the record has ``distance`` (per move, first = start),
        ``moves`` (``"step"`` or ``"loop"``), ``tangent`` (``‖P_D g‖/‖g‖`` before each move) and
        ``stop_reason`` (``reached``, ``max_steps``, ``stalled``: no move got closer, or with
        ``loops=False`` the tangent fraction fell below ``min_tangent``).
    """
    cfg = (config or BracketPathConfig()).check()
    x = clamp_box(start.detach().clone(), cfg.box)
    end = end.detach()
    rec = _Path()
    cache: dict = {}
    for _ in range(cfg.max_steps + 1):
        dist = float((end - x).norm())
        rec.distance.append(dist)
        if dist <= cfg.threshold:
            rec.stop_reason = "reached"
            break
        if len(rec.moves) >= cfg.max_steps:
            break
        gap = end - x
        basis = orthonormal_rows(field_fn(x).detach(), cfg.rtol)
        inside = basis.T @ (basis @ gap)
        tangent = float(inside.norm()) / dist
        rec.tangent.append(tangent)
        new = None
        if not cfg.loops and tangent < cfg.min_tangent:
            rec.stop_reason = "stalled"
            break
        if tangent >= cfg.min_tangent:
            h = min(cfg.step, float(inside.norm()))
            cand = clamp_box(x + h * inside / inside.norm().clamp_min(1e-300), cfg.box)
            if (end - cand).norm() < dist:
                new, kind = cand, "step"
        if new is None and cfg.loops:
            new, kind = _try_loop(field_fn, x, end, dist, basis, cache, cfg), "loop"
        if new is None and tangent < cfg.min_tangent and float(inside.norm()) > 0:
            cand = clamp_box(x + inside, cfg.box)  # no loop helped: to the leaf's nearest point
            if (end - cand).norm() < dist:
                new, kind = cand, "step"
        if new is None:
            rec.stop_reason = "stalled"
            break
        x = new.detach()
        rec.moves.append(kind)
    return x, rec


@dataclass
class BracketPathResult:
    """Paths of :func:`bracket_paths`, one entry per pair.

    Attributes:
        config: the settings used.
        distance: per path, ``‖x − end‖`` before each move and at the end.
        moves: per path, ``"step"`` (inside D) or ``"loop"`` (commutator loop) per move.
        stop_reason: per path: ``reached``, ``max_steps`` or ``stalled``.
        final: ``(B, *input_shape)`` the last points.
        final_predicted: predicted class at the last point.
        seconds: wall-clock time of all paths.
    """

    config: BracketPathConfig
    distance: list[list[float]]
    moves: list[list[str]]
    stop_reason: list[str]
    final: Tensor
    final_predicted: list[int]
    seconds: float

    @property
    def reached(self) -> list[bool]:
        return [r == "reached" for r in self.stop_reason]

    @property
    def relative_distance(self) -> list[float]:
        return [d[-1] / d[0] for d in self.distance]

    def to_json(self) -> dict:
        return {
            "config": self.config.to_json(),
            "seconds": self.seconds,
            "paths": [
                {
                    "reached": self.reached[i],
                    "stop_reason": self.stop_reason[i],
                    "start_distance": self.distance[i][0],
                    "final_distance": self.distance[i][-1],
                    "relative_distance": self.relative_distance[i],
                    "steps": self.moves[i].count("step"),
                    "loops": self.moves[i].count("loop"),
                    "final_predicted": self.final_predicted[i],
                    "distance": self.distance[i],
                }
                for i in range(len(self.distance))
            ],
        }


def bracket_paths(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    config: BracketPathConfig | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> BracketPathResult:
    """Paths ``start[i] → end[i]`` along D_x = span{∇x p_a} and its commutator loops.

    Args:
        model: classifier mapping ``(N, *shape)`` to logits (eval mode is forced).
        start: ``(B, *shape)`` start points.
        end: ``(B, *shape)`` end points.
        config: :class:`BracketPathConfig`.
        dtype: computation dtype (float64 by default: brackets are small).

    Returns:
        :class:`BracketPathResult`. Fields are the C − 1 unit fields ``∇p_a / ‖∇p_a‖``.
    """
    cfg = (config or BracketPathConfig()).check()
    check_dtype(dtype, "dtype")
    start, end = check_pair(start, end)
    t0 = time.perf_counter()
    model = model_in(model, dtype)
    shape = tuple(start.shape[1:])
    device = next(model.parameters()).device
    s = start.detach().to(device, dtype).flatten(1)
    e = end.detach().to(device, dtype).flatten(1)
    dists, moves, reasons, finals = [], [], [], []
    with eval_mode(model):
        with torch.no_grad():
            c = model(s[:1].reshape(1, *shape)).shape[1]
        fn = model_fields(model, shape, count=c - 1, normalize=True)
        for i in range(s.shape[0]):
            with torch.no_grad():  # torch.func still differentiates; no graph of the weights
                x, rec = bracket_path(fn, s[i], e[i], cfg)
            dists.append(rec.distance)
            moves.append(rec.moves)
            reasons.append(rec.stop_reason)
            finals.append(x)
        final = torch.stack(finals)
        with torch.no_grad():
            pred = model(final.reshape(-1, *shape)).argmax(dim=1).tolist()
    return BracketPathResult(
        config=cfg,
        distance=dists,
        moves=moves,
        stop_reason=reasons,
        final=final.reshape(-1, *shape).cpu(),
        final_predicted=pred,
        seconds=time.perf_counter() - t0,
    )
