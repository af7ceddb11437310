"""Horizontal paths: move from a start point toward an end point *along the leaf* (inside D_x).

At each step the direction is the orthogonal projection of ``end − x`` onto
``D_x = Im G(x) = span{∇x p_a}``, normalised to unit length (theory §2):

- ``greedy`` (the reference method): ``x ← clamp(x + h·u)`` with fixed ``h``.
- ``adaptive``: the same direction, but the step is halved until the distance to the end
  decreases (free: no model call) and grows back to ``h`` after a success; the path stops when
  the step falls below ``min_step`` (a local minimum of the distance on the leaf).
- ``rk4``: classical Runge-Kutta on the unit field ``u(x)`` (4 evaluations per step).

Paths run batched: one :class:`~leafscope.information.DataInformation` per step for all active
paths. A :class:`PathState` holds everything needed to continue; save it with
:meth:`PathState.save` (``torch.save`` of plain tensors/lists) and resume with
:func:`continue_paths`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from leafscope.dtypes import check_dtype, dtype_from_name
from leafscope.errors import InputError
from leafscope.foliation._common import (
    check_box,
    check_count,
    check_pair,
    check_positive,
    check_rtol,
    clamp_box,
    config_json,
    model_in,
    unit,
)
from leafscope.information import DataInformation
from leafscope.io import torch_save_atomic
from leafscope.models.inspect import model_device

__all__ = [
    "METHODS",
    "PathConfig",
    "PathResult",
    "PathState",
    "continue_paths",
    "horizontal_paths",
    "leaf_direction",
    "random_pairs",
    "start_paths",
]

METHODS = ("greedy", "adaptive", "rk4")


@dataclass
class PathConfig:
    """Settings of a batch of horizontal paths (defaults: the reference experiments).

    Attributes:
        method: ``greedy``, ``adaptive`` or ``rk4``.
        step: step length h (input units, pixels in [0, 1]).
        threshold: stop when ``‖x − end‖ ≤ threshold``.
        max_steps: stop after this many steps.
        box: clamp every point to ``[low, high]`` (None: no clamp).
        dtype: ``torch.float32`` (default, fast) or ``torch.float64`` (the JSON form stores
            the name, e.g. ``"float32"``).
        rtol: relative tolerance of the numerical rank of G used to define D_x (None: default).
        record_every: keep every k-th point of each path (the last point is always kept).
        min_step: ``adaptive`` stops when its step falls below this.
        chunk_size: samples per vectorised Jacobian chunk (None: all at once).
    """

    method: str = "greedy"
    step: float = 0.1
    threshold: float = 1.0
    max_steps: int = 5000
    box: tuple[float, float] | None = (0.0, 1.0)
    dtype: torch.dtype = torch.float32
    rtol: float | None = None
    record_every: int = 1
    min_step: float = 1e-3
    chunk_size: int | None = None

    def check(self) -> PathConfig:
        """Validate every field; return self. Raises :class:`InputError` naming the bad field."""
        if self.method not in METHODS:
            raise InputError(
                f"unknown path method {self.method!r}: use one of {', '.join(METHODS)}"
            )
        check_positive(self.step, "step")
        if not (isinstance(self.threshold, (int, float)) and self.threshold >= 0):
            raise InputError(f"threshold must be a number >= 0 (got {self.threshold!r})")
        check_count(self.max_steps, "max_steps", 0)
        check_count(self.record_every, "record_every")
        check_positive(self.min_step, "min_step")
        self.box = check_box(self.box)
        check_dtype(self.dtype, "PathConfig.dtype")
        check_rtol(self.rtol)
        return self

    def to_json(self) -> dict:
        return config_json(self)


@dataclass
class PathResult:
    """Finished (or paused) horizontal paths, one entry per pair.

    Attributes:
        config: the settings used.
        points: per path, the recorded points ``(K_i, *input_shape)`` (CPU, path dtype).
        point_steps: per path, the step index of each recorded point.
        predicted: per path, the predicted class at every step (length steps_i + 1).
        max_prob: per path, the maximum class probability at every step.
        distance: per path, ``‖x − end‖`` at every step (input units).
        tangent_fraction: per path, ``‖P_D(end − x)‖ / ‖end − x‖`` at every step (1: the end is
            straight ahead inside the leaf; 0: the leaf is orthogonal to the way to the end).
        reached: per path, whether the threshold was reached.
        stop_reason: per path: ``reached``, ``max_steps``, ``converged`` (adaptive) or ``paused``.
        start_label / end_label: true labels when given (-1 otherwise).
    """

    config: PathConfig
    points: list[Tensor]
    point_steps: list[list[int]]
    predicted: list[list[int]]
    max_prob: list[list[float]]
    distance: list[list[float]]
    tangent_fraction: list[list[float]]
    reached: list[bool]
    stop_reason: list[str]
    start_label: list[int] = field(default_factory=list)
    end_label: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def start_distance(self) -> list[float]:
        return [d[0] for d in self.distance]

    @property
    def final_distance(self) -> list[float]:
        return [d[-1] for d in self.distance]

    @property
    def relative_distance(self) -> list[float]:
        """Final distance / start distance, per path."""
        return [d[-1] / d[0] for d in self.distance]

    @property
    def length(self) -> list[float]:
        """Euclidean length of each path (sum of recorded step lengths when record_every=1)."""
        out = []
        for pts in self.points:
            diffs = pts[1:].flatten(1) - pts[:-1].flatten(1)
            out.append(float(diffs.norm(dim=1).sum()) if len(pts) > 1 else 0.0)
        return out

    def to_json(self, include_points: bool = False) -> dict:
        """JSON-able dict; ``include_points`` adds the recorded points as nested lists."""
        paths = []
        for i in range(len(self)):
            entry = {
                "steps": len(self.distance[i]) - 1,
                "reached": self.reached[i],
                "stop_reason": self.stop_reason[i],
                "start_distance": self.distance[i][0],
                "final_distance": self.distance[i][-1],
                "relative_distance": self.relative_distance[i],
                "length": self.length[i],
                "start_label": self.start_label[i] if self.start_label else -1,
                "end_label": self.end_label[i] if self.end_label else -1,
                "predicted": self.predicted[i],
                "max_prob": self.max_prob[i],
                "distance": self.distance[i],
                "tangent_fraction": self.tangent_fraction[i],
                "point_steps": self.point_steps[i],
            }
            if include_points:
                entry["points"] = self.points[i].tolist()
            paths.append(entry)
        return {"config": self.config.to_json(), "paths": paths}


class PathState:
    """The state of a batch of paths: positions, counters and per-step records.

    Build it with :func:`start_paths`, advance it with :func:`continue_paths`, persist it with
    :meth:`save` / :meth:`load`, read it with :meth:`result`.
    """

    def __init__(self, start: Tensor, end: Tensor, config: PathConfig):
        config.check()
        start, end = check_pair(start, end)
        dtype = config.dtype
        self.config = config
        self.input_shape = tuple(start.shape[1:])
        self.start = start.detach().flatten(1).to("cpu", dtype)
        self.end = end.detach().flatten(1).to("cpu", dtype)
        self.x = clamp_box(self.start.clone(), config.box)
        b = self.start.shape[0]
        self.steps = torch.zeros(b, dtype=torch.long)
        self.active = torch.ones(b, dtype=torch.bool)
        self.step_size = torch.full((b,), float(config.step), dtype=dtype)
        self.stop_reason = ["paused"] * b
        self.records: dict[str, list[list]] = {
            k: [[] for _ in range(b)] for k in ("predicted", "max_prob", "distance", "tangent")
        }
        self.frames: list[list[Tensor]] = [[] for _ in range(b)]
        self.frame_steps: list[list[int]] = [[] for _ in range(b)]
        self.start_label: list[int] = [-1] * b
        self.end_label: list[int] = [-1] * b

    @property
    def n_paths(self) -> int:
        return self.start.shape[0]

    @property
    def done(self) -> bool:
        return not bool(self.active.any())

    def state_dict(self) -> dict:
        """Plain tensors, numbers, strings and lists (loadable with ``weights_only=True``)."""
        return {
            "config": self.config.to_json(),
            "input_shape": list(self.input_shape),
            "start": self.start,
            "end": self.end,
            "x": self.x,
            "steps": self.steps,
            "active": self.active,
            "step_size": self.step_size,
            "stop_reason": list(self.stop_reason),
            "records": self.records,
            "frames": self.frames,
            "frame_steps": self.frame_steps,
            "start_label": self.start_label,
            "end_label": self.end_label,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state atomically (:func:`leafscope.io.torch_save_atomic`)."""
        return torch_save_atomic(path, self.state_dict())

    @classmethod
    def from_state_dict(cls, data: dict) -> PathState:
        """Rebuild a state from :meth:`state_dict` output."""
        try:
            cfg = dict(data["config"])
            cfg["box"] = tuple(cfg["box"]) if cfg["box"] is not None else None
            cfg["dtype"] = dtype_from_name(cfg["dtype"])
            config = PathConfig(**cfg)
            shape = tuple(data["input_shape"])
            obj = cls(data["start"].reshape(-1, *shape), data["end"].reshape(-1, *shape), config)
            for key in ("x", "steps", "active", "step_size", "stop_reason", "records"):
                setattr(obj, key, data[key])
            for key in ("frames", "frame_steps", "start_label", "end_label"):
                setattr(obj, key, data[key])
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"not a saved path state ({exc}): use PathState.save output") from exc
        return obj

    @classmethod
    def load(cls, path: str | os.PathLike) -> PathState:
        """Read a state written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no saved path state at {path}: check the path")
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def result(self) -> PathResult:
        """The paths so far as a :class:`PathResult` (points on the CPU, in the path dtype)."""
        r = self.records
        points = []
        for frames in self.frames:
            stack = torch.stack(frames) if frames else torch.empty(0, self.start.shape[1])
            points.append(stack.reshape(-1, *self.input_shape))
        return PathResult(
            config=self.config,
            points=points,
            point_steps=[list(s) for s in self.frame_steps],
            predicted=[list(v) for v in r["predicted"]],
            max_prob=[list(v) for v in r["max_prob"]],
            distance=[list(v) for v in r["distance"]],
            tangent_fraction=[list(v) for v in r["tangent"]],
            reached=[s == "reached" for s in self.stop_reason],
            stop_reason=list(self.stop_reason),
            start_label=list(self.start_label),
            end_label=list(self.end_label),
        )


def leaf_direction(info: DataInformation, target: Tensor, x: Tensor, rtol: float | None) -> Tensor:
    """Projection of ``target − x`` (B, d) onto D_x = Im G(x) (not normalised)."""
    return info.project_leaf(target - x, rtol)


def start_paths(
    start: Tensor,
    end: Tensor,
    config: PathConfig | None = None,
    *,
    start_label: list[int] | None = None,
    end_label: list[int] | None = None,
) -> PathState:
    """A fresh :class:`PathState` for pairs ``start[i] → end[i]``, both ``(B, *input_shape)``."""
    state = PathState(start, end, config or PathConfig())
    if start_label is not None:
        state.start_label = [int(v) for v in start_label]
    if end_label is not None:
        state.end_label = [int(v) for v in end_label]
    return state


def _field(model: nn.Module, x: Tensor, end: Tensor, cfg: PathConfig, shape) -> Tensor:
    info = DataInformation(model, x.reshape(-1, *shape), chunk_size=cfg.chunk_size)
    return unit(leaf_direction(info, end, x, cfg.rtol))[0]


def continue_paths(
    model: nn.Module, state: PathState, max_iterations: int | None = None
) -> PathState:
    """Advance every active path until it stops, or for at most ``max_iterations`` steps.

    Args:
        model: classifier mapping ``(B, *input_shape)`` to logits; evaluated in eval mode.
        state: from :func:`start_paths` or :meth:`PathState.load`; updated in place.
        max_iterations: pause after this many steps (the state can be saved and resumed).

    Returns:
        The same state.
    """
    cfg = state.config
    dtype = cfg.dtype
    model = model_in(model, dtype)
    device = model_device(model)
    shape = state.input_shape
    it = 0
    while not state.done and (max_iterations is None or it < max_iterations):
        idx = torch.nonzero(state.active).flatten()
        x = state.x[idx].to(device)
        end = state.end[idx].to(device)
        info = DataInformation(model, x.reshape(-1, *shape), chunk_size=cfg.chunk_size)
        gap = end - x
        dist = gap.norm(dim=1)
        direction = leaf_direction(info, end, x, cfg.rtol)
        u, pnorm = unit(direction)
        probs = info.probs
        _record(state, idx, info.predicted, probs.max(dim=1).values, dist, pnorm / dist, x)
        move = torch.ones(len(idx), dtype=torch.bool)
        for j, i in enumerate(idx.tolist()):
            reason = None
            if dist[j] <= cfg.threshold:
                reason = "reached"
            elif state.steps[i] >= cfg.max_steps:
                reason = "max_steps"
            elif cfg.method == "adaptive" and state.step_size[i] < cfg.min_step:
                reason = "converged"
            if reason is not None:
                state.stop_reason[i] = reason
                state.active[i] = False
                move[j] = False
                _keep_frame(state, i, x[j], force=True)
        if not bool(move.any()):
            it += 1
            continue
        sel = torch.nonzero(move).flatten()
        new_x = _step(model, x[sel], end[sel], u[sel], dist[sel], state, idx[sel], shape)
        moved = idx[sel]
        state.x[moved] = new_x.to("cpu", state.x.dtype)
        state.steps[moved] += 1
        it += 1
    return state


def _step(model, x, end, u, dist, state: PathState, ids: Tensor, shape) -> Tensor:
    cfg = state.config
    h = cfg.step
    if cfg.method == "greedy":
        return clamp_box(x + h * u, cfg.box)
    if cfg.method == "rk4":
        k1 = u
        k2 = _field(model, clamp_box(x + 0.5 * h * k1, cfg.box), end, cfg, shape)
        k3 = _field(model, clamp_box(x + 0.5 * h * k2, cfg.box), end, cfg, shape)
        k4 = _field(model, clamp_box(x + h * k3, cfg.box), end, cfg, shape)
        return clamp_box(x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4), cfg.box)
    # adaptive: backtrack on the step length until the distance decreases (no model calls)
    sizes = state.step_size[ids].to(x.device)
    out = x.clone()
    for j in range(x.shape[0]):
        s = float(sizes[j])
        while s >= cfg.min_step:
            cand = clamp_box(x[j] + s * u[j], cfg.box)
            if (end[j] - cand).norm() < dist[j]:
                out[j] = cand
                s = min(2.0 * s, h)
                break
            s *= 0.5
        state.step_size[ids[j]] = s
    return out


def _record(state: PathState, idx: Tensor, pred, maxp, dist, tangent, x) -> None:
    r = state.records
    for j, i in enumerate(idx.tolist()):
        r["predicted"][i].append(int(pred[j]))
        r["max_prob"][i].append(float(maxp[j]))
        r["distance"][i].append(float(dist[j]))
        r["tangent"][i].append(float(tangent[j]))
        if int(state.steps[i]) % state.config.record_every == 0:
            _keep_frame(state, i, x[j])


def _keep_frame(state: PathState, i: int, point: Tensor, force: bool = False) -> None:
    step = int(state.steps[i])
    if state.frame_steps[i] and state.frame_steps[i][-1] == step:
        return
    if force or step % state.config.record_every == 0:
        state.frames[i].append(point.detach().cpu().clone())
        state.frame_steps[i].append(step)


def horizontal_paths(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    config: PathConfig | None = None,
    *,
    start_label: list[int] | None = None,
    end_label: list[int] | None = None,
) -> PathResult:
    """Run horizontal paths ``start[i] → end[i]`` to completion.

    Args:
        model: classifier (eval mode is forced during the computation).
        start: ``(B, *input_shape)`` start points (e.g. images in [0, 1]).
        end: ``(B, *input_shape)`` end points, each different from its start.
        config: :class:`PathConfig` (defaults: greedy, step 0.1, threshold 1, 5000 steps, box
            [0, 1], float32).
        start_label / end_label: optional true labels stored with the result.

    Returns:
        A :class:`PathResult` (per step: predicted class, max probability, distance to the end).

    Examples:
        >>> from leafscope.testing import tiny_mlp
        >>> x = torch.rand(8, 12, generator=torch.Generator().manual_seed(0))
        >>> res = horizontal_paths(tiny_mlp(n_in=12), x[:4], x[4:], PathConfig(max_steps=50))
        >>> len(res), all(r < 1 for r in res.relative_distance)  # 4 paths, all got closer
        (4, True)
    """
    state = start_paths(start, end, config, start_label=start_label, end_label=end_label)
    return continue_paths(model, state).result()


def random_pairs(n_points: int, n_pairs: int, seed: int = 0) -> Tensor:
    """``(n_pairs, 2)`` seeded random pairs ``(i, j)``, ``i ≠ j``, of ``range(n_points)``.

    Examples:
        >>> pairs = random_pairs(5, 3, seed=0)
        >>> pairs.shape, bool((pairs[:, 0] != pairs[:, 1]).all())
        (torch.Size([3, 2]), True)
    """
    check_count(n_points, "number of points", 2)
    check_count(n_pairs, "pairs")
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(n_points, (n_pairs,), generator=gen)
    shift = torch.randint(1, n_points, (n_pairs,), generator=gen)
    return torch.stack([first, (first + shift) % n_points], dim=1)
