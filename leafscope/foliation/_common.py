"""Helpers shared by the foliation modules: model casting, argument checks, settings as JSON."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from leafscope.dtypes import dtype_name
from leafscope.errors import InputError
from leafscope.information import cast_model, check_inputs


def model_in(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model`` itself when its parameters already have ``dtype``, else a cast copy (eval mode)."""
    cast = cast_model(model, dtype)
    return cast if cast is model else cast.eval()


def check_positive(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a finite number > 0 (got {value!r})")
    return float(value)


def check_count(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return value


def check_box(box: tuple[float, float] | None) -> tuple[float, float] | None:
    if box is None:
        return None
    try:
        lo, hi = (float(b) for b in box)
    except (TypeError, ValueError) as exc:
        raise InputError(f"box must be a pair (low, high) or None (got {box!r})") from exc
    if not lo < hi:
        raise InputError(f"box must have low < high (got {box!r}); pixels in [0, 1] use (0, 1)")
    return lo, hi


def check_pair(start: Tensor, end: Tensor) -> tuple[Tensor, Tensor]:
    """Validate start/end batches ``(B, *shape)`` (single points ``(*shape)`` are not guessed)."""
    check_inputs(start, "start points")
    check_inputs(end, "end points")
    if start.shape != end.shape:
        raise InputError(
            f"start and end must have the same shape (B, *input_shape) (got {tuple(start.shape)} "
            f"and {tuple(end.shape)}); add a batch axis with x.unsqueeze(0)"
        )
    gap = (end - start).flatten(1).norm(dim=1)
    same = torch.nonzero(gap == 0).flatten().tolist()
    if same:
        raise InputError(
            f"start equals end for pairs {same[:5]}: pick two different points for each path"
        )
    return start, end


def clamp_box(x: Tensor, box: tuple[float, float] | None) -> Tensor:
    return x if box is None else x.clamp(box[0], box[1])


def unit(v: Tensor, eps: float = 1e-30) -> tuple[Tensor, Tensor]:
    """Rows of ``v`` (B, d) normalised, and their norms (zero rows stay zero)."""
    norm = v.norm(dim=1)
    return v / norm.clamp_min(eps)[:, None], norm


def check_rtol(rtol: float | None) -> float | None:
    """A rank tolerance: None (the default rule) or a number >= 0."""
    if rtol is not None and not rtol >= 0:
        raise InputError(f"rtol must be >= 0 or None (got {rtol})")
    return rtol


def config_json(config) -> dict:
    """A settings dataclass as JSON-able dict (the box tuple becomes a list, the torch dtype its
    name such as ``"float32"``)."""
    from dataclasses import asdict

    out = asdict(config)
    out["box"] = list(config.box) if config.box is not None else None
    out["dtype"] = dtype_name(config.dtype)
    return out
