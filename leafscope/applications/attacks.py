"""Adversarial attacks with an L2 budget: the spectral attacks OSSA and TSSA, and the gradient
baselines FGSM (L2) and PGD (L2).

All attacks are untargeted against the model's own decision: the loss is the cross-entropy with
the *clean prediction* ŷ(x) (equal to the true label on correctly classified points), and an
attack fools a point when the prediction at the attacked point differs from ŷ(x) (the fooling
rate of Zhao et al. 2019 and Tron et al. 2024). Every attack keeps its points in the data box
(``box``, default [0, 1]) by clipping, so the realised perturbation can be shorter than the
budget, never longer (clipping is a projection onto a convex set that holds x).

* **OSSA** (one-step spectral attack, Zhao et al., AAAI 2019): one step of length ε along the top
  eigenvector v₁ of G(x), the optimal one-step direction for the second-order KL
  ``½ δᵀGδ``; of the two signs, the one whose step ``x ± εv₁`` has the larger loss; then the
  clip to the box.
* **TSSA** (two-step spectral attack, Tron, Couëllan & Puechmorel, Machine Learning 2024,
  arXiv 2203.00922): a two-segment approximation of the geodesic of the (degenerate) Fisher
  metric that starts along v₁. First step: ``ratio·ε`` along v₁(x), sign as OSSA; second step:
  ``(1 − ratio)·ε`` along the top eigenvector v₁(x₁) at the intermediate point x₁, signed to
  continue the first step (``⟨v₁(x₁), s₁⟩ ≥ 0``). The bend at x₁ is how the turning of the
  transverse leaves (the curvature of the leaf space in pixel coordinates) enters.
* **FGSM** (L2 version, the "fast gradient method"): ``x + ε ∇L/‖∇L‖``.
* **FGSM2** (a control for TSSA, ours): two FGSM steps of ``ratio·ε`` and ``(1 − ratio)·ε``,
  the gradient recomputed at the intermediate point — TSSA's two-step schedule with the
  gradient in place of the top eigenvector.
* **PGD** (L2, Madry et al. 2018): random start in the ε-ball, ``steps`` steps of size
  ``step_size·ε`` along the normalised gradient, each followed by the projection onto the ε-ball
  and the box; a point keeps the first iterate that fools the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.information import DataInformation, check_inputs, eval_mode
from leafscope.information.jacobian import cast_model

__all__ = [
    "METHODS",
    "AttackOutcome",
    "attack",
    "fgsm",
    "fgsm2",
    "fisher_rao_distance",
    "ossa",
    "pgd",
    "top_eigenvector",
    "tssa",
]

METHODS = ("ossa", "tssa", "fgsm", "fgsm2", "pgd")


@dataclass(frozen=True)
class AttackOutcome:
    """Attacked points and what happened to them.

    Attributes:
        x_adv: ``(N, *shape)`` attacked points (in the box).
        clean_predicted: ``(N,)`` ŷ(x).
        predicted: ``(N,)`` prediction at ``x_adv``.
        fooled: ``(N,)`` bool, ``predicted != clean_predicted``.
        perturbation_norm: ``(N,)`` ``‖x_adv − x‖₂`` (≤ budget).
        fisher_rao_distance: ``(N,)`` Fisher–Rao distance between p(x) and p(x_adv)
            (:func:`fisher_rao_distance`).
    """

    x_adv: Tensor
    clean_predicted: Tensor
    predicted: Tensor
    fooled: Tensor
    perturbation_norm: Tensor
    fisher_rao_distance: Tensor


def _check(x: Tensor, budget: float, box: tuple[float, float] | None) -> None:
    check_inputs(x, "points")
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise InputError(f"budget must be a finite L2 length > 0 (got {budget!r})")
    if box is not None and not box[0] < box[1]:
        raise InputError(f"box must be (low, high) with low < high (got {box!r})")


def _clip(x: Tensor, box: tuple[float, float] | None) -> Tensor:
    return x if box is None else x.clamp(box[0], box[1])


def _loss(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    with torch.no_grad():
        return F.cross_entropy(model(x), labels, reduction="none")


def _flat_norm(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).norm(dim=1)


def _labels(model: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    if labels is not None:
        return labels.to(x.device)
    with torch.no_grad():
        return model(x).argmax(dim=1)


def top_eigenvector(model: nn.Module, x: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``(N, *shape)`` the unit top eigenvector v₁ of G(x) at each point (sign arbitrary), from
    the thin SVD of the factor of G (C backward passes per point, nothing n×n), in ``dtype``."""
    with eval_mode(model):
        info = DataInformation(model, x, dtype=dtype)
    _, vecs = info.eigh()
    return vecs[:, 0].reshape(x.shape).to(x.dtype)


def _signed_step(
    model: nn.Module, x: Tensor, direction: Tensor, length: float, labels: Tensor, box
) -> tuple[Tensor, Tensor]:
    """``clip(x + s·length·direction)`` with the sign s ∈ {+1, −1} whose *unclipped* step
    ``x + s·length·direction`` has the larger loss (ties: +): one step, the sign that raises
    the loss, then the clip; returns the point and the signed (unclipped) step."""
    step = length * direction
    better = _loss(model, x - step, labels) > _loss(model, x + step, labels)
    shape = (-1,) + (1,) * (x.dim() - 1)
    sign = torch.where(better, -1.0, 1.0).to(x.dtype).reshape(shape)
    return _clip(x + sign * step, box), sign * step


def ossa(
    model: nn.Module,
    x: Tensor,
    budget: float,
    *,
    labels: Tensor | None = None,
    box: tuple[float, float] | None = (0.0, 1.0),
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """One-step spectral attack: ``clip(x ± ε v₁(x))``, the sign that raises the loss.

    Args:
        model: classifier ``(N, *shape) → (N, C)``.
        x: points ``(N, *shape)``.
        budget: ε, the L2 length of the step.
        labels: the labels of the loss (default: the clean prediction).
        box: the data range the attacked points are clipped to (None: no clipping).
        dtype: dtype of G's eigenvector.
    """
    _check(x, budget, box)
    labels = _labels(model, x, labels)
    direction = top_eigenvector(model, x, dtype=dtype)
    return _signed_step(model, x, direction, budget, labels, box)[0]


def tssa(
    model: nn.Module,
    x: Tensor,
    budget: float,
    *,
    ratio: float = 0.6,
    labels: Tensor | None = None,
    box: tuple[float, float] | None = (0.0, 1.0),
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Two-step spectral attack (module docstring): ``ratio·ε`` along ±v₁(x) (the sign that
    raises the loss), then ``(1 − ratio)·ε`` along v₁ at the intermediate point, signed to go on
    in the direction of the first step; both points clipped to the box.

    ``ratio = 0.6`` is the authors' fixed first-step share (their published code and README).
    """
    _check(x, budget, box)
    if not 0 < ratio <= 1:
        raise InputError(f"ratio must be in (0, 1] (got {ratio!r}); the authors use 0.6")
    labels = _labels(model, x, labels)
    first = top_eigenvector(model, x, dtype=dtype)
    x1, step1 = _signed_step(model, x, first, ratio * budget, labels, box)
    if ratio == 1:
        return x1
    second = top_eigenvector(model, x1, dtype=dtype)
    align = (second * step1).reshape(x.shape[0], -1).sum(dim=1)
    shape = (-1,) + (1,) * (x.dim() - 1)
    sign = torch.where(align < 0, -1.0, 1.0).to(x.dtype).reshape(shape)
    return _clip(x1 + (1 - ratio) * budget * sign * second, box)


def _grad(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    z = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(z), labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, z)
    return g


def _unit(g: Tensor) -> Tensor:
    norm = _flat_norm(g).clamp_min(1e-30).reshape((-1,) + (1,) * (g.dim() - 1))
    return g / norm


def fgsm(
    model: nn.Module,
    x: Tensor,
    budget: float,
    *,
    labels: Tensor | None = None,
    box: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Fast gradient method in L2: ``clip(x + ε ∇L/‖∇L‖)`` (no move where the gradient is 0)."""
    _check(x, budget, box)
    labels = _labels(model, x, labels)
    with eval_mode(model):
        g = _grad(model, x, labels)
    return _clip(x + budget * _unit(g), box)


def fgsm2(
    model: nn.Module,
    x: Tensor,
    budget: float,
    *,
    ratio: float = 0.6,
    labels: Tensor | None = None,
    box: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Two fast-gradient steps, ``ratio·ε`` then ``(1 − ratio)·ε``, the gradient recomputed at
    the (clipped) intermediate point: TSSA's schedule with the loss gradient as direction."""
    _check(x, budget, box)
    if not 0 < ratio <= 1:
        raise InputError(f"ratio must be in (0, 1] (got {ratio!r})")
    labels = _labels(model, x, labels)
    x1 = fgsm(model, x, ratio * budget, labels=labels, box=box)
    if ratio == 1:
        return x1
    return fgsm(model, x1, (1 - ratio) * budget, labels=labels, box=box)


def _ball(delta: Tensor, radius: float) -> Tensor:
    norm = _flat_norm(delta).reshape((-1,) + (1,) * (delta.dim() - 1))
    return delta * torch.clamp(radius / norm.clamp_min(1e-30), max=1.0)


def pgd(
    model: nn.Module,
    x: Tensor,
    budget: float,
    *,
    steps: int = 20,
    step_size: float = 0.25,
    random_start: bool = True,
    seeds: Sequence[int] | None = None,
    labels: Tensor | None = None,
    box: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Projected gradient ascent on the loss in the L2 ball of radius ε and the box.

    Args:
        steps: gradient steps.
        step_size: step length as a fraction of ε (0.25 with 20 steps is the usual
            ``2.5·ε/steps``).
        random_start: start at a uniform point of the ε-ball (per point from ``seeds``).
        seeds: one seed per point for the random start (default 0, 1, ...).
    """
    _check(x, budget, box)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1 (got {steps!r})")
    labels = _labels(model, x, labels)
    n = x.shape[0]
    delta = torch.zeros_like(x)
    if random_start:
        seeds = list(range(n)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != n:
            raise InputError(f"seeds must give one seed per point ({n}), got {len(seeds)}")
        d = x[0].numel()
        draws = []
        for s in seeds:
            gen = torch.Generator().manual_seed(s)
            g = torch.randn(d, generator=gen, dtype=torch.float64)
            r = budget * float(torch.rand((), generator=gen, dtype=torch.float64)) ** (1.0 / d)
            draws.append(g / g.norm() * r)
        delta = torch.stack(draws).reshape(x.shape).to(x)
    adv = _clip(x + delta, box)
    best = adv.clone()
    done = torch.zeros(n, dtype=torch.bool, device=x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    with eval_mode(model):
        for _ in range(steps):
            with torch.no_grad():
                fooled = model(adv).argmax(dim=1) != labels
            newly = fooled & ~done
            best = torch.where(newly.reshape(shape), adv, best)
            done = done | fooled
            if bool(done.all()):
                break
            g = _grad(model, adv, labels)
            stepped = adv + step_size * budget * _unit(g)
            adv = _clip(x + _ball(stepped - x, budget), box)
    return torch.where(done.reshape(shape), best, adv)


def fisher_rao_distance(p: Tensor, p_adv: Tensor) -> Tensor:
    """``(N,)`` Fisher–Rao distance ``2·arccos(Σ √(p_i p'_i))`` between two batches of
    probability vectors: the great-circle distance between ``q = 2√p`` and ``q' = 2√p'`` on the
    sphere of radius 2 (the leaf-space geodesic distance, ``docs/geometry.md`` §3)."""
    overlap = (p.clamp_min(0) * p_adv.clamp_min(0)).sqrt().sum(dim=1).clamp(-1.0, 1.0)
    return 2.0 * torch.arccos(overlap)


def attack(
    method: str,
    model: nn.Module,
    x: Tensor,
    budget: float,
    *,
    dtype: torch.dtype = torch.float64,
    box: tuple[float, float] | None = (0.0, 1.0),
    ratio: float = 0.6,
    steps: int = 20,
    step_size: float = 0.25,
    seeds: Sequence[int] | None = None,
) -> AttackOutcome:
    """Run one of :data:`METHODS` on ``x`` with L2 budget ε in ``dtype`` (the model is copied
    to it when it differs) and report the outcome against the clean prediction."""
    if method not in METHODS:
        raise InputError(f"unknown attack {method!r}: use one of {', '.join(METHODS)}")
    model = cast_model(model, dtype)
    x = x.detach().to(dtype)
    with eval_mode(model):
        with torch.no_grad():
            p_clean = torch.softmax(model(x), dim=1)
        labels = p_clean.argmax(dim=1)
        if method == "ossa":
            x_adv = ossa(model, x, budget, labels=labels, box=box, dtype=dtype)
        elif method == "tssa":
            x_adv = tssa(model, x, budget, ratio=ratio, labels=labels, box=box, dtype=dtype)
        elif method == "fgsm":
            x_adv = fgsm(model, x, budget, labels=labels, box=box)
        elif method == "fgsm2":
            x_adv = fgsm2(model, x, budget, ratio=ratio, labels=labels, box=box)
        else:
            x_adv = pgd(
                model, x, budget, steps=steps, step_size=step_size, seeds=seeds, labels=labels,
                box=box,
            )  # fmt: skip
        with torch.no_grad():
            p_adv = torch.softmax(model(x_adv), dim=1)
    predicted = p_adv.argmax(dim=1)
    return AttackOutcome(
        x_adv=x_adv.detach(),
        clean_predicted=labels,
        predicted=predicted,
        fooled=predicted != labels,
        perturbation_norm=_flat_norm(x_adv - x),
        fisher_rao_distance=fisher_rao_distance(p_clean, p_adv),
    )
