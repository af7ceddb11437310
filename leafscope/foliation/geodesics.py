"""Second-order leaf paths: geodesics of the penalised metric, then a horizontal path along them.

The greedy rule of :mod:`.paths` looks one step ahead: it stalls where ``end − x ⟂ D_x``. A
horizontal path that joins two points is a curve of finite *sub-Riemannian* length (the metric
is the Euclidean one, restricted to ``D = Im G``). The classical way to find such curves (the
Riemannian approximation of a sub-Riemannian metric; Montgomery, *A Tour of Subriemannian
Geometries*, 2002, §1.9) penalises the vertical part: the metric

    g_λ(x)(v, v) = |P_D(x) v|² + λ |P_K(x) v|²,     K = ker G(x) = D_x^⊥,

is Riemannian for every λ > 0, its distance increases with λ to the sub-Riemannian distance,
and its geodesics converge to sub-Riemannian ones where the two points are joined horizontally.
Where they are not (an integrable D, two different leaves), the λ-geodesics keep a vertical
length bounded away from 0. This module finds λ-geodesics between two fixed points by
minimising the discrete energy of a curve of ``segments`` straight pieces,

    E_λ = segments · Σ_k g_λ(m_k)(Δ_k, Δ_k),   Δ_k = x_{k+1} − x_k,   m_k = (x_k + x_{k+1}) / 2,

over the interior points (the endpoints are fixed; images stay in their box). λ runs through
``penalties`` (continuation: each stage starts from the curve of the previous one). Each
iteration tries two moves and keeps the one that lowers the energy most (each halved until it
lowers the energy measured with D at the moved curve, then clamped to the box):

- the **Newton-like move** (:func:`newton_move`): the exact gradient of E_λ through
  :mod:`torch.func`, which differentiates the projector ``P_K(m)``, i.e. contains the
  derivative of the metric (the Christoffel term of the geodesic equation: this is where the
  method is second-order and sees how D turns), preconditioned by the Hessian of the energy
  with the metric frozen (positive definite, block tridiagonal, inverted by one
  conjugate-gradient solve in R^d);
- the **lagged move** to the geodesic of the frozen metric (:func:`frozen_geodesic_steps`:
  constant momentum ``c = A_k Δ_k``): the Picard iteration of the Euler–Lagrange equation,
  exact wherever D is locally constant (ReLU / max-pooling networks almost everywhere, where
  the metric has no derivative).

Unlike the greedy rule it uses the distribution along the whole curve at once, so it can bend
the curve to collect, from D's met further on, the directions missing at the start: on a
contact distribution of R^3, where the greedy path cannot move at all (``end − x ⟂ D_x`` at
the start), the λ-geodesics' vertical length falls ~10× per 10× λ and their tracked path
reaches the end (``tests/foliation/test_geodesics.py``). Where no horizontal path joins the
points (an integrable D, two different leaves) the energy grows linearly in λ instead
(``E_λ/λ → |P_K gap|²/|gap|²`` for a constant D) and the vertical length stays put: the
signature the study looks for.

``D_x`` is ``span{∇z_a − ∇z_1}`` (z the logits): exactly ``Im G(x)`` whenever every p_a > 0,
and computed without the softmax, so it keeps its full rank C − 1 where float arithmetic would
round saturated probabilities to 0 or 1.

An optimised curve is not yet a horizontal path (its vertical length is small, not zero, and
it is discretised). :func:`track_curve` turns it into one honestly: starting at the start
point it takes greedy steps *inside D at the current point* (length ``track_step``, never
overshooting) toward each of the curve's points in turn, the last being the end point. The
verdict uses only that tracked path: connected when it ends within ``threshold`` of the end,
the criterion of the greedy paths.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, jacrev, vmap

from leafscope.dtypes import check_dtype
from leafscope.errors import InputError
from leafscope.foliation._common import (
    check_box,
    check_count,
    check_pair,
    check_positive,
    clamp_box,
    config_json,
    model_in,
)
from leafscope.foliation.paths import PathConfig, PathResult
from leafscope.information import eval_mode
from leafscope.information.jacobian import constant_parameters

__all__ = [
    "GeodesicConfig",
    "GeodesicResult",
    "curve_energy",
    "frozen_geodesic_steps",
    "newton_move",
    "geodesic_paths",
    "horizontal_part",
    "leaf_bases",
    "optimise_curve",
    "track_curve",
    "vertical_part",
]


@dataclass
class GeodesicConfig:
    """Settings of the λ-geodesic path finder (defaults: the leaf-path study of issue 21).

    Attributes:
        segments: straight pieces of the discrete curve (its interior has ``segments − 1``
            free points).
        penalties: the λ of each continuation stage, increasing (λ = 1 is the Euclidean metric).
        iterations: iterations per stage at most (:func:`optimise_curve`).
        relaxation: each move is first tried at this fraction of its length (0 < relaxation
            ≤ 1; 1: the full Newton-like step, the whole way to the frozen geodesic).
        halvings: an iteration whose move does not lower the energy (measured with D at the
            moved curve) halves the move, at most this many times; a stage stops when none
            lowers it.
        metric_derivative: also try the Newton-like move of :func:`newton_move` (the exact
            gradient of the energy, with the derivative of the metric, preconditioned by the
            frozen Hessian); False: only the lagged move toward the frozen geodesic (cheaper,
            the same wherever D is locally constant).
        tolerance: a stage stops when no curve point moves more than this (relative to the
            start distance).
        cg_tol: relative residual of the conjugate-gradient solve of each frozen problem.
        box: every point of the curve and of the tracked path stays in ``[low, high]`` (None:
            free, for vectors).
        dtype: computation dtype of the energy (float64 by default: the gradient of a
            projector is a difference of nearly equal terms).
        track_step: step length of the tracked horizontal path (input units).
        track_max_steps: the tracked path stops after this many steps (None: when the curve
            ends).
        threshold: the tracked path *connects* the pair when it ends this close to the end.
        chunk_size: curve points per vectorised Jacobian chunk (None: all at once).
        jitter: the straight start curve's interior points move by ``jitter``·U(0, 1) per
            entry (seeded; into the box when there is one): interpolated flat backgrounds
            tie inside max-pooling windows, where the energy has no gradient.
        seed: seed of the jitter.
    """

    segments: int = 128
    penalties: tuple[float, ...] = (10.0, 100.0, 1000.0)
    iterations: int = 20
    relaxation: float = 1.0
    tolerance: float = 1e-4
    halvings: int = 8
    metric_derivative: bool = True
    cg_tol: float = 1e-8
    box: tuple[float, float] | None = (0.0, 1.0)
    dtype: torch.dtype = torch.float64
    track_step: float = 0.1
    track_max_steps: int | None = None
    threshold: float = 1.0
    chunk_size: int | None = None
    jitter: float = 1e-3
    seed: int = 0

    def check(self) -> GeodesicConfig:
        """Validate every field; return self. Raises :class:`InputError` naming the bad field."""
        check_count(self.segments, "segments", 2)
        check_count(self.iterations, "iterations", 0)
        if not (isinstance(self.relaxation, (int, float)) and 0 < self.relaxation <= 1):
            raise InputError(f"relaxation must be in (0, 1] (got {self.relaxation!r})")
        check_positive(self.tolerance, "tolerance")
        check_count(self.halvings, "halvings", 0)
        check_positive(self.cg_tol, "cg_tol")
        try:
            penalties = tuple(float(v) for v in self.penalties)
        except (TypeError, ValueError) as exc:
            raise InputError(f"penalties must be numbers (got {self.penalties!r})") from exc
        if not penalties or any(not (math.isfinite(v) and v >= 1) for v in penalties):
            raise InputError(
                f"penalties must be one or more finite numbers >= 1 (got {self.penalties!r}): "
                "λ = 1 is the Euclidean metric, larger λ penalise the vertical part more"
            )
        if any(b < a for a, b in zip(penalties, penalties[1:], strict=False)):
            raise InputError(f"penalties must increase (got {self.penalties!r})")
        self.penalties = penalties
        self.box = check_box(self.box)
        check_dtype(self.dtype, "GeodesicConfig.dtype")
        check_positive(self.track_step, "track_step")
        if self.track_max_steps is not None:
            check_count(self.track_max_steps, "track_max_steps", 0)
        if not (isinstance(self.threshold, (int, float)) and self.threshold >= 0):
            raise InputError(f"threshold must be a number >= 0 (got {self.threshold!r})")
        if self.chunk_size is not None:
            check_count(self.chunk_size, "chunk_size")
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter < math.inf):
            raise InputError(f"jitter must be a number >= 0 (got {self.jitter!r})")
        return self

    def to_json(self) -> dict:
        out = config_json(self)
        out["penalties"] = list(self.penalties)
        return out


@dataclass
class GeodesicResult:
    """λ-geodesics between pairs of points and the horizontal paths that track them.

    Attributes:
        config: the settings used.
        curves: per pair, the optimised curve ``(segments + 1, *input_shape)`` (CPU).
        stages: per pair, one record per penalty: ``penalty``, ``energy`` (relative to the
            squared start distance), ``vertical_length`` (Σ_k |P_K(m_k) Δ_k| / start
            distance), ``length`` (Euclidean, / start distance), ``iterations`` and
            ``rejected`` (moves halved because they did not lower the energy) and ``accepted``
            (``{"newton": k, "lagged": m}``: which move each accepted iteration took).
        start_vertical_length: per pair, the vertical length of the straight segment
            (/ start distance): what the optimisation starts from.
        tracked: the tracked horizontal paths (:class:`PathResult`, one per pair; steps
            record every point): the verdict.
        seconds: wall time, per pair.
    """

    config: GeodesicConfig
    curves: list[Tensor]
    stages: list[list[dict]]
    start_vertical_length: list[float]
    tracked: PathResult
    seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.curves)

    @property
    def vertical_length(self) -> list[float]:
        """Per pair, the vertical length of the final curve (/ start distance)."""
        return [s[-1]["vertical_length"] if s else v for s, v in
                zip(self.stages, self.start_vertical_length, strict=True)]  # fmt: skip

    def to_json(self) -> dict:
        """JSON-able dict (the curves are left out: they are tensors)."""
        tracked = self.tracked.to_json()
        return {
            "config": self.config.to_json(),
            "pairs": [
                {
                    "start_vertical_length": self.start_vertical_length[i],
                    "stages": self.stages[i],
                    "seconds": self.seconds[i] if self.seconds else None,
                    "tracked": tracked["paths"][i],
                }
                for i in range(len(self))
            ],
        }


def _logits_fn(model: nn.Module, input_shape: tuple[int, ...]):
    def logits(z: Tensor) -> Tensor:
        return model(z.reshape(1, *input_shape))[0]

    return logits


def leaf_bases(
    model: nn.Module, points: Tensor, *, input_shape: tuple[int, ...], chunk_size=None
) -> Tensor:
    """Orthonormal bases ``(n, C − 1, d)`` of ``D_x = span{∇z_a − ∇z_1}`` at flattened points
    ``(n, d)``: QR of the C − 1 logit-difference gradients, differentiable in ``points`` (use it
    inside :mod:`torch.func` transforms; wrap it in ``torch.no_grad()`` otherwise). No rank
    cut: a rank-deficient D_x gives rows of noise, so callers work at points of full rank.

    Args:
        model: classifier returning logits ``(1, C)`` for ``(1, *input_shape)`` (eval mode, its
            parameters in the dtype of ``points``).
        points: ``(n, d)`` flattened points.
        input_shape: shape of one input (``d`` = its number of entries).
        chunk_size: points per vectorised Jacobian chunk (None: all at once).
    """
    jac = vmap(jacrev(_logits_fn(model, input_shape)), chunk_size=chunk_size)(points)
    basis = jac[:, 1:] - jac[:, :1]
    return torch.linalg.qr(basis.transpose(1, 2)).Q.transpose(1, 2)


def horizontal_part(bases: Tensor, vectors: Tensor) -> Tensor:
    """``P_D^k v_k = Q_kᵀ Q_k v_k`` for each basis ``Q_k`` (``(n, r, d)``) and vector ``(n, d)``."""
    return torch.einsum("krd,kr->kd", bases, torch.einsum("krd,kd->kr", bases, vectors))


def vertical_part(
    model: nn.Module,
    points: Tensor,
    vectors: Tensor,
    *,
    input_shape: tuple[int, ...],
    chunk_size: int | None = None,
) -> Tensor:
    """``P_K(x) v = v − P_D(x) v`` for each point and vector: the part of ``v`` in
    ``ker G(x)`` (bases of :func:`leaf_bases`; differentiable in ``points`` and ``vectors``).

    Returns:
        ``(n, d)``.
    """
    bases = leaf_bases(model, points, input_shape=input_shape, chunk_size=chunk_size)
    return vectors - horizontal_part(bases, vectors)


def curve_energy(
    model: nn.Module,
    curve: Tensor,
    penalty: float,
    *,
    input_shape: tuple[int, ...],
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The discrete λ-energy of a curve and the vertical length of each piece.

    Args:
        model: as in :func:`leaf_bases`.
        curve: ``(segments + 1, d)`` the points of the curve, endpoints included.
        penalty: λ ≥ 1.

    Returns:
        ``(E, v)``: ``E = segments · Σ_k (|Δ_k|² + (λ − 1)|P_K(m_k) Δ_k|²)`` (a scalar) and
        ``v = (|P_K(m_k) Δ_k|)_k`` (``(segments,)``).
    """
    steps = curve[1:] - curve[:-1]
    mids = 0.5 * (curve[1:] + curve[:-1])
    vert = vertical_part(model, mids, steps, input_shape=input_shape, chunk_size=chunk_size)
    vert2 = (vert * vert).sum(1)
    energy = steps.shape[0] * ((steps * steps).sum() + (penalty - 1.0) * vert2.sum())
    return energy, vert2.sqrt()


def _inverse_metric(bases: Tensor, vectors: Tensor, penalty: float) -> Tensor:
    """``A_k⁻¹ v_k = P_D^k v_k + P_K^k v_k / λ`` for every piece k (``vectors``: (n, d))."""
    inv = 1.0 / penalty
    return (1.0 - inv) * horizontal_part(bases, vectors) + inv * vectors


def _solve_inverse_sum(bases: Tensor, rhs: Tensor, penalty: float, cg_tol: float) -> Tensor:
    """``c`` with ``(Σ_k A_k⁻¹) c = rhs`` by conjugate gradients (the operator is
    ``n/λ · I + (1 − 1/λ) Σ_k Q_kᵀ Q_k``, eigenvalues in [n/λ, n], never formed)."""
    from scipy.sparse.linalg import LinearOperator, cg

    n, _, d = bases.shape

    def matvec(v: np.ndarray) -> np.ndarray:
        c = torch.as_tensor(np.asarray(v).reshape(-1), dtype=bases.dtype, device=bases.device)
        return _inverse_metric(bases, c.expand(n, d), penalty).sum(0).double().cpu().numpy()

    op = LinearOperator((d, d), matvec=matvec, dtype=np.float64)
    c, _ = cg(op, rhs.double().cpu().numpy(), rtol=cg_tol, maxiter=20 * d)
    return torch.as_tensor(c, dtype=bases.dtype, device=bases.device)


def frozen_geodesic_steps(bases: Tensor, gap: Tensor, penalty: float, cg_tol: float) -> Tensor:
    """The steps ``(n, d)`` of the minimal λ-energy curve with the metric frozen piecewise.

    With ``A_k = P_D^k + λ P_K^k`` fixed on piece k, the minimiser of ``Σ Δ_kᵀ A_k Δ_k``
    subject to ``Σ Δ_k = gap`` has a constant momentum ``c = A_k Δ_k``:
    ``Δ_k = A_k⁻¹ c = P_D^k c + P_K^k c / λ`` and ``(Σ_k A_k⁻¹) c = gap``.
    """
    n, _, d = bases.shape
    c = _solve_inverse_sum(bases, gap, penalty, cg_tol)
    return _inverse_metric(bases, c.expand(n, d), penalty)


def newton_move(bases: Tensor, gradient: Tensor, penalty: float, cg_tol: float) -> Tensor:
    """The move ``(n + 1, d)`` of the curve's points (endpoints fixed) that minimises the
    quadratic model ``gᵀm + ½ mᵀ H m`` of the energy: ``g`` the exact gradient (``gradient``,
    ``(n − 1, d)``, over the interior points, with the derivative of the metric) and ``H`` the
    Hessian of the energy with the metric frozen (SPD, block tridiagonal).

    In the steps ``δ_k = m_{k+1} − m_k`` (Σ δ_k = 0) the model is
    ``Σ_k n δ_kᵀ A_k δ_k + G_kᵀ δ_k`` with ``G_k = Σ_{j>k} g_j``, so
    ``δ_k = −A_k⁻¹ (G_k + μ) / 2n`` with ``(Σ_k A_k⁻¹) μ = −Σ_k A_k⁻¹ G_k``: one solve with the
    operator of :func:`frozen_geodesic_steps`. With the gradient of the frozen energy this is
    exactly the move to the frozen geodesic; H is positive definite, so the move is a descent
    direction of the energy whenever ``g ≠ 0``.
    """
    n, _, d = bases.shape
    padded = torch.cat([gradient, gradient.new_zeros(1, d)])  # g_1..g_{n-1}, then 0
    suffix = torch.flip(torch.cumsum(torch.flip(padded, (0,)), 0), (0,))  # G_k, k = 0..n-1
    mu = _solve_inverse_sum(bases, -_inverse_metric(bases, suffix, penalty).sum(0), penalty,
                            cg_tol)  # fmt: skip
    delta = -_inverse_metric(bases, suffix + mu, penalty) / (2 * n)
    move = torch.cat([delta.new_zeros(1, d), torch.cumsum(delta, 0)])
    move[-1] = 0.0  # Σ δ_k = 0 up to the solve's tolerance: the end point stays exact
    return move


def optimise_curve(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    config: GeodesicConfig,
    *,
    progress=None,
) -> tuple[Tensor, list[dict], float]:
    """A λ-geodesic between two points, from the straight segment, through every penalty.

    Each iteration tries the Newton-like move (:func:`newton_move`, when
    ``metric_derivative``) and the lagged move to the frozen geodesic
    (:func:`frozen_geodesic_steps`), each from ``relaxation`` of its length, halved up to
    ``halvings`` times until the energy measured with D at the moved (box-clamped) curve falls,
    and keeps the lower energy; a stage ends when neither lowers it, after ``iterations`` or
    when the curve stops moving (``tolerance``). The energy falls at every accepted iteration.

    Args:
        model: classifier (run in eval mode; cast to the config dtype if needed).
        start, end: one point each, ``(*input_shape)``.
        config: :class:`GeodesicConfig` (checked here).
        progress: optional callable ``(stage_index, penalty, record)`` after each stage.

    Returns:
        ``(curve, stages, start_vertical_length)``: the curve ``(segments + 1, *input_shape)``
        in the config dtype (CPU), one record per stage (see :class:`GeodesicResult`), and the
        vertical length of the straight segment relative to the start distance.
    """
    config.check()
    shape = tuple(start.shape)
    n = config.segments
    cast = model_in(model, config.dtype)
    dev = next((p.device for p in cast.parameters()), torch.device("cpu"))
    x0 = start.detach().reshape(-1).to(dev, config.dtype)
    x1 = end.detach().reshape(-1).to(dev, config.dtype)
    gap = x1 - x0
    scale = float(gap.norm())
    if scale == 0:
        raise InputError("start equals end: pick two different points")
    t = torch.linspace(0, 1, n + 1, dtype=config.dtype, device=dev)[:, None]
    curve = x0 + t * gap
    if config.jitter > 0:  # off the ties of max-pooling windows (flat image backgrounds)
        gen = torch.Generator().manual_seed(config.seed)
        noise = torch.rand((n - 1, gap.numel()), generator=gen, dtype=config.dtype).to(dev)
        low = 0.0 if config.box is not None else 0.5
        curve[1:-1] = clamp_box(curve[1:-1] + config.jitter * (noise - low), config.box)

    def measure(curve: Tensor, bases: Tensor, penalty: float) -> dict:
        steps = curve[1:] - curve[:-1]
        vert = (steps - horizontal_part(bases, steps)).norm(dim=1)
        energy = n * float((steps * steps).sum() + (penalty - 1.0) * (vert * vert).sum())
        return {
            "energy": energy / scale**2,
            "vertical_length": float(vert.sum()) / scale,
            "length": float(steps.norm(dim=1).sum()) / scale,
        }

    stages: list[dict] = []
    with eval_mode(cast), constant_parameters(cast):

        def bases_of(curve: Tensor) -> Tensor:
            mids = 0.5 * (curve[1:] + curve[:-1])
            with torch.no_grad():
                return leaf_bases(cast, mids, input_shape=shape, chunk_size=config.chunk_size)

        def energy_of(inner: Tensor, penalty: float) -> Tensor:
            full = torch.cat([x0[None], inner, x1[None]])
            return curve_energy(
                cast, full, penalty, input_shape=shape, chunk_size=config.chunk_size
            )[0]

        bases = bases_of(curve)
        start_vertical = measure(curve, bases, 1.0)["vertical_length"]
        for i, penalty in enumerate(config.penalties):
            record = measure(curve, bases, penalty)
            done, rejected, accepted_moves = 0, 0, {"newton": 0, "lagged": 0}

            def proposals(curve: Tensor, bases: Tensor, penalty: float = penalty):
                """The moves tried: the Newton-like move with the exact gradient (when the
                metric's derivative is used) and the move toward the frozen geodesic; the one
                that lowers the energy most is taken."""
                if config.metric_derivative:
                    # detached: a cast TorchScript model keeps parameters that require grad
                    g = grad(lambda inner: energy_of(inner, penalty))(curve[1:-1]).detach()
                    yield "newton", newton_move(bases, g, penalty, config.cg_tol)
                steps = frozen_geodesic_steps(bases, gap, penalty, config.cg_tol)
                target = torch.cat([x0[None], x0 + torch.cumsum(steps, 0)])
                target[-1] = x1  # exact, not the rounded sum
                yield "lagged", target - curve

            while done < config.iterations:
                done += 1
                best = None  # (kind, curve, bases, record) of the lowest accepted energy
                for kind, move in proposals(curve, bases):
                    size = config.relaxation
                    for _ in range(config.halvings + 1):  # backtrack on the true energy
                        moved = curve + size * move
                        moved[1:-1] = clamp_box(moved[1:-1], config.box)  # images stay images
                        moved_bases = bases_of(moved)
                        trial = measure(moved, moved_bases, penalty)
                        if trial["energy"] < record["energy"]:
                            if best is None or trial["energy"] < best[3]["energy"]:
                                best = (kind, moved, moved_bases, trial)
                            break
                        rejected += 1
                        size *= 0.5
                if best is None:
                    break  # no move lowers the energy: a (local) minimum
                accepted, moved, moved_bases, trial = best
                accepted_moves[accepted] += 1
                change = float((moved - curve).norm(dim=1).max()) / scale
                curve, bases, record = moved, moved_bases, trial
                if change < config.tolerance:
                    break
            record = {
                "penalty": penalty,
                **record,
                "iterations": done,
                "rejected": rejected,
                "accepted": accepted_moves,
            }
            stages.append(record)
            if progress is not None:
                progress(i, penalty, record)
    return curve.detach().cpu().reshape(n + 1, *shape), stages, start_vertical


def _horizontal(model, y: Tensor, target: Tensor, shape, chunk_size) -> tuple[Tensor, Tensor]:
    """``P_D(y)(target − y)`` for one point, and the logits at ``y``."""
    g = (target - y)[None]
    with torch.no_grad():
        vert = vertical_part(model, y[None], g, input_shape=shape, chunk_size=chunk_size)
        logits = model(y.reshape(1, *shape))[0]
    return (g - vert)[0], logits


def track_curve(
    model: nn.Module,
    curve: Tensor,
    config: GeodesicConfig,
    *,
    start_label: int = -1,
    end_label: int = -1,
) -> PathResult:
    """A horizontal path from ``curve[0]`` that follows the points of ``curve`` to its end.

    Toward each point ``w = curve[k]`` in turn (k = 1..segments, the last being the end), it
    takes at most ``ceil(|curve[k] − curve[k−1]| / track_step) + 1`` steps
    ``y ← clamp(y + min(track_step, |u|) · u/|u|)``, ``u = P_D(y)(w − y)``: every step lies in
    ``D`` at the point it starts from, as in the greedy rule, and never passes ``w`` inside
    the leaf. The path stops as soon as it is within ``threshold`` of the end.

    Returns:
        A :class:`PathResult` with one path (every step recorded; ``tangent_fraction`` measured
        toward the end point, ``stop_reason`` ``reached``, ``max_steps`` or ``curve_end``).
    """
    config.check()
    shape = tuple(curve.shape[1:])
    cast = model_in(model, config.dtype)
    dev = next((p.device for p in cast.parameters()), torch.device("cpu"))
    pts = curve.detach().reshape(curve.shape[0], -1).to(dev, config.dtype)
    end = pts[-1]
    y = clamp_box(pts[0].clone(), config.box)
    records: dict[str, list] = {k: [] for k in ("predicted", "max_prob", "distance", "tangent")}
    frames = [y.cpu()]

    def record(y: Tensor) -> tuple[float, Tensor]:
        toward_end, logits = _horizontal(cast, y, end, shape, config.chunk_size)
        dist = float((end - y).norm())
        prob = torch.softmax(logits, dim=0)
        records["predicted"].append(int(prob.argmax()))
        records["max_prob"].append(float(prob.max()))
        records["distance"].append(dist)
        records["tangent"].append(float(toward_end.norm()) / dist if dist > 0 else 1.0)
        return dist, toward_end

    reached, capped = False, False
    cap = math.inf if config.track_max_steps is None else config.track_max_steps
    with eval_mode(cast), constant_parameters(cast):
        dist, _ = record(y)
        reached = dist <= config.threshold
        for k in range(1, pts.shape[0]):
            if reached or capped:
                break
            budget = math.ceil(float((pts[k] - pts[k - 1]).norm()) / config.track_step) + 1
            for _ in range(budget):
                if len(frames) - 1 >= cap:
                    capped = True
                    break
                u, _ = _horizontal(cast, y, pts[k], shape, config.chunk_size)
                size = float(u.norm())
                if size <= 1e-12 * max(1.0, float(y.norm())):
                    break
                y = clamp_box(y + min(config.track_step, size) * u / size, config.box)
                frames.append(y.cpu())
                dist, _ = record(y)
                if dist <= config.threshold:
                    reached = True
                    break
    path_config = PathConfig(
        method="greedy",
        step=config.track_step,
        threshold=config.threshold,
        max_steps=len(frames) - 1,
        box=config.box,
        dtype=config.dtype,
    )
    return PathResult(
        config=path_config,
        points=[torch.stack(frames).reshape(-1, *shape)],
        point_steps=[list(range(len(frames)))],
        predicted=[records["predicted"]],
        max_prob=[records["max_prob"]],
        distance=[records["distance"]],
        tangent_fraction=[records["tangent"]],
        reached=[reached],
        stop_reason=["reached" if reached else "max_steps" if capped else "curve_end"],
        start_label=[start_label],
        end_label=[end_label],
    )


def geodesic_paths(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    config: GeodesicConfig | None = None,
    *,
    start_label: list[int] | None = None,
    end_label: list[int] | None = None,
    progress=None,
) -> GeodesicResult:
    """λ-geodesics from ``start[i]`` to ``end[i]`` and the horizontal paths tracking them.

    Args:
        model: classifier mapping ``(N, *shape)`` to logits.
        start, end: ``(B, *input_shape)`` pairs (the box, when set, clamps the start).
        config: :class:`GeodesicConfig` (default: the study's settings).
        start_label, end_label: optional true labels, recorded in the tracked paths.
        progress: optional callable ``(pair, stage_index, penalty, record)``.

    Returns:
        A :class:`GeodesicResult` (the verdict: ``result.tracked.reached``).
    """
    config = (config or GeodesicConfig()).check()
    start, end = check_pair(start, end)
    b = start.shape[0]
    start_label = list(start_label) if start_label is not None else [-1] * b
    end_label = list(end_label) if end_label is not None else [-1] * b
    curves, stages, vertical, tracked, seconds = [], [], [], [], []
    for i in range(b):
        t0 = time.perf_counter()
        x0 = clamp_box(start[i].detach(), config.box)

        def report(stage, penalty, record, i=i):
            if progress is not None:
                progress(i, stage, penalty, record)

        curve, st, v = optimise_curve(model, x0, end[i], config, progress=report)
        curves.append(curve)
        stages.append(st)
        vertical.append(v)
        tracked.append(
            track_curve(model, curve, config, start_label=start_label[i], end_label=end_label[i])
        )
        seconds.append(time.perf_counter() - t0)
    merged = PathResult(
        config=tracked[0].config,
        **{
            key: [item for r in tracked for item in getattr(r, key)]
            for key in (
                "points",
                "point_steps",
                "predicted",
                "max_prob",
                "distance",
                "tangent_fraction",
                "reached",
                "stop_reason",
                "start_label",
                "end_label",
            )
        },
    )
    return GeodesicResult(
        config=config,
        curves=curves,
        stages=stages,
        start_vertical_length=vertical,
        tracked=merged,
        seconds=seconds,
    )
