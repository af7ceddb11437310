"""``path``: horizontal paths along the leaf, from given start points to given end points.

Each step projects ``end − x`` onto ``D_x = Im G(x)``, normalises it and steps (images are
clamped to [0, 1], vectors are free): :mod:`leafscope.foliation.paths`. With the method
``geodesic`` the path is second-order (:mod:`leafscope.foliation.geodesics`): a λ-geodesic of
the metric that penalises the part of a move outside D is found first (``segments`` pieces,
``penalties`` λ), then the path takes the same steps inside D toward each point of that curve
in turn; the rows add the curve's vertical length before and after. The units are the pairs
(``start[i] → end[i]``; one start or one end is shared by every pair). A point is
``NAME:SPLIT:INDEX`` (e.g. ``mnist:test:0``, read with the options of the given data set:
data_dir, grey, resize) or a plain ``INDEX`` into the given data set (name and split). The model
is checked against the data set of the first start point.

One row per pair: labels, steps, why it stopped, start / final / relative distance, length,
the final class and probability, the per-step trace (predicted class, max probability,
distance, tangent fraction) as JSON, and ``keep_points`` evenly spaced recorded points. With a
result folder: ``path.json`` (every pair, every step), per pair an image strip
(``path_NNN_strip.png``), an animation (``path_NNN.gif``, images only) and the kept points
(``path_NNN.npz``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.dtypes import DTYPES
from leafscope.errors import InputError
from leafscope.foliation.paths import METHODS
from leafscope.tasks.base import Context, Params, Task, param, register_task

__all__ = [
    "PATH_METHODS",
    "PathParams",
    "PathTask",
    "path_columns",
    "path_entries",
    "path_rows",
    "scalar",
]

#: The step rules of :mod:`leafscope.foliation.paths` and the second-order ``geodesic``.
PATH_METHODS = (*METHODS, "geodesic")


def _parse_point(spec: str) -> tuple[str | None, str | None, int]:
    """``(name, split, index)`` of ``NAME:SPLIT:INDEX``; ``(None, None, index)`` of ``INDEX``."""
    from leafscope.data import parse_point_spec

    text = str(spec).strip()
    if text.isdigit():
        return None, None, int(text)
    return parse_point_spec(text)


def point_role(spec: str) -> str:
    """The data role holding the point ``spec``: ``index`` (the data set the flags name) for a
    plain ``INDEX``, ``point:NAME:SPLIT`` otherwise."""
    name, split, _ = _parse_point(spec)
    return "index" if name is None else f"point:{name}:{split}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PathParams(Params):
    """Parameters of :class:`PathTask` (distances in input units: pixels in [0, 1])."""

    start: tuple[str, ...] = param(
        ("mnist:test:0",),
        help="start point(s): NAME:SPLIT:INDEX (e.g. mnist:test:0) or INDEX of the data set; "
        "comma-separated for several pairs",
        flag="--from",
        metavar="POINT[,POINT...]",
    )
    end: tuple[str, ...] = param(
        ("mnist:test:1",),
        help="end point(s), as --from (one start or one end is shared by every pair)",
        flag="--to",
        metavar="POINT[,POINT...]",
    )
    method: str = param(
        "greedy",
        help="path method (greedy: the reference; geodesic: follow a λ-geodesic of the metric "
        "penalising moves outside the leaf)",
        choices=PATH_METHODS,
    )
    step: float = param(0.1, help="step length (input units)")
    threshold: float = param(1.0, help="stop when the distance to the end is at most this")
    max_steps: int = param(5000, help="step limit per path")
    dtype: str = param(
        "float32", help="dtype of the path (geodesic: float64 is steadier)", choices=tuple(DTYPES)
    )
    segments: int = param(128, help="geodesic: straight pieces of the curve")
    penalties: tuple[float, ...] = param(
        (10.0, 100.0, 1000.0),
        help="geodesic: the penalty λ of each stage on the part of a move outside the leaf, "
        "increasing, comma-separated",
    )
    iterations: int = param(20, help="geodesic: iterations per penalty at most")
    flip_target: bool = param(
        False, help="go to the left-right mirror of each end point (a symbol not in the data)"
    )
    frames: int = param(10, help="frames in each image strip")
    keep_points: int = param(
        60,
        help="recorded points kept per path (evenly spaced, first and last included) for the "
        "strip, the animation and path_NNN.npz",
    )

    def validate(self) -> None:
        for name in ("start", "end"):
            specs = getattr(self, name)
            if not specs:
                raise InputError(f"{name} needs at least one point, e.g. mnist:test:0")
            for spec in specs:
                try:
                    _parse_point(spec)
                except InputError as exc:
                    raise InputError(f"{name}: {exc}") from None
        if len(self.start) != len(self.end) and 1 not in (len(self.start), len(self.end)):
            raise InputError(
                f"start has {len(self.start)} points and end {len(self.end)}: give as many of "
                "each, or one of either (shared by every pair)"
            )
        if not self.flip_target:
            for i, (a, b) in enumerate(self.pairs()):
                if a.strip() == b.strip():
                    raise InputError(
                        f"end {b!r} is the same point as the start of pair {i}: pick two "
                        "different points (or flip_target)"
                    )
        if self.method not in PATH_METHODS:
            raise InputError(
                f"method must be one of {', '.join(PATH_METHODS)} (got {self.method!r})"
            )
        if self.method == "geodesic":
            self.geodesic_config(box=None)  # validates segments, penalties, iterations
        if not (np.isfinite(self.step) and self.step > 0):
            raise InputError(f"step must be a number > 0 (got {self.step})")
        if not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise InputError(f"threshold must be a number >= 0 (got {self.threshold})")
        if self.max_steps < 0:
            raise InputError(f"max_steps must be >= 0 (got {self.max_steps})")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")
        for name in ("frames", "keep_points"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1 (got {getattr(self, name)})")

    def geodesic_config(self, *, box: tuple[float, float] | None) -> Any:
        """The :class:`~leafscope.foliation.geodesics.GeodesicConfig` of these parameters."""
        from leafscope.foliation.geodesics import GeodesicConfig

        return GeodesicConfig(
            segments=self.segments,
            penalties=self.penalties,
            iterations=self.iterations,
            box=box,
            dtype=DTYPES[self.dtype],
            track_step=self.step,
            track_max_steps=self.max_steps,
            threshold=self.threshold,
        ).check()

    def pairs(self) -> list[tuple[str, str]]:
        """``(start, end)`` of every pair."""
        n = max(len(self.start), len(self.end))
        starts = self.start * n if len(self.start) == 1 else self.start
        ends = self.end * n if len(self.end) == 1 else self.end
        return list(zip(starts, ends, strict=True))


def path_columns() -> tuple[str, ...]:
    """The per-path columns shared by ``path`` and ``walk``."""
    return (
        "start_label",
        "end_label",
        "steps",
        "stop_reason",
        "reached",
        "start_distance",
        "final_distance",
        "relative_distance",
        "length",
        "final_predicted",
        "final_max_prob",
        "tangent_fraction_start",
        "tangent_fraction_final",
    )


def path_rows(result: Any) -> dict[str, np.ndarray]:
    """The :func:`path_columns` of every path of a :class:`leafscope.foliation.PathResult`."""
    n = len(result)
    labels = (result.start_label or [-1] * n), (result.end_label or [-1] * n)
    return {
        "start_label": np.asarray(labels[0], dtype=np.int64),
        "end_label": np.asarray(labels[1], dtype=np.int64),
        "steps": np.asarray([len(d) - 1 for d in result.distance], dtype=np.int64),
        "stop_reason": np.asarray(result.stop_reason, dtype=str),
        "reached": np.asarray(result.reached, dtype=bool),
        "start_distance": np.asarray(result.start_distance, dtype=np.float64),
        "final_distance": np.asarray(result.final_distance, dtype=np.float64),
        "relative_distance": np.asarray(result.relative_distance, dtype=np.float64),
        "length": np.asarray(result.length, dtype=np.float64),
        "final_predicted": np.asarray([p[-1] for p in result.predicted], dtype=np.int64),
        "final_max_prob": np.asarray([p[-1] for p in result.max_prob], dtype=np.float64),
        "tangent_fraction_start": np.asarray([t[0] for t in result.tangent_fraction]),
        "tangent_fraction_final": np.asarray([t[-1] for t in result.tangent_fraction]),
    }


def evenly_spaced(count: int, keep: int) -> list[int]:
    """At most ``keep`` indices of ``range(count)``, evenly spaced, first and last included."""
    if count <= keep:
        return list(range(count))
    return sorted({int(round(v)) for v in np.linspace(0, count - 1, keep)})


@register_task
class PathTask(Task):
    """Horizontal paths between given pairs of points."""

    name = "path"
    Params = PathParams
    per_point = False
    summary = "move from one point to another along the leaf (horizontal path)"
    description = (
        "Horizontal path from each --from point to its --to point: each step projects "
        "(end - x) on D_x = Im G(x), normalises it and steps (images stay in [0, 1]). Points "
        "are NAME:SPLIT:INDEX (e.g. mnist:test:0) or an INDEX of --dataset/--split. Rows: per "
        "pair the steps, stop reason, distances, length, final class and the per-step trace; "
        "with --out DIR also DIR/_files/path.json, image strips, animations (images) and the "
        "kept points (.npz). --method geodesic first bends a curve of --segments pieces "
        "toward the leaf (a geodesic of the metric penalising moves outside it by each of "
        "--penalties) and then steps inside the leaf toward each of its points."
    )
    columns = (
        "unit",
        "start",
        "end",
        *path_columns(),
        "curve_vertical_start",
        "curve_vertical_final",
        "trace",
        "frame_steps",
        "frames",
    )

    def extra_data(self, data: Any) -> dict[str, Any]:
        """One role per data set the points name (their options: those of ``data``); the main
        set ``data`` (checked against the model) becomes the set of the first start point."""
        out = {}
        for a, b in self.params.pairs():
            for spec in (a, b):
                name, split, _ = _parse_point(spec)
                role = point_role(spec)
                out[role] = data if name is None else data.replace(name=name, split=split)
        out["data"] = out[point_role(self.params.start[0])]
        return out

    def units(self, context: Context) -> list[Any]:
        return [{"from": a, "to": b} for a, b in self.params.pairs()]

    def _point(self, context: Context, spec: str) -> tuple[torch.Tensor, int]:
        _, _, index = _parse_point(spec)
        data = context.data(point_role(spec))
        if index >= len(data):
            where = f"{data.name}:{data.split}"
            raise InputError(
                f"point {spec!r}: index {index} is out of range, {where} has {len(data)} points "
                f"(valid 0..{len(data) - 1})"
            )
        x, y = data.take([index])
        return x[0], int(y[0])

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.data import check_model_input

        model = context.model()
        shape = is_image = None
        checked = set()
        for unit in context.units:
            for key in ("from", "to"):
                spec = unit[key]
                x, _ = self._point(context, spec)
                data = context.data(point_role(spec))
                if shape is None:
                    shape, is_image = tuple(x.shape), data.is_image
                elif tuple(x.shape) != shape:
                    first = context.units[0]["from"]
                    raise InputError(
                        f"point {spec!r} has shape {tuple(x.shape)} but {first!r} has {shape}: "
                        "pick points of one shape (or pass grey / resize H,W)"
                    )
                if point_role(spec) not in checked:
                    check_model_input(model, x[None], source=f"the point {spec}")
                    checked.add(point_role(spec))
        if self.params.flip_target and not is_image:
            raise InputError(
                f"flip_target mirrors images left-right, but the points are vectors of shape "
                f"{shape}: drop flip_target"
            )
        return {"input_shape": list(shape), "is_image": bool(is_image)}

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.foliation import PathConfig, continue_paths, flip_horizontal, start_paths

        p: PathParams = self.params
        model = context.model()
        box = (0.0, 1.0) if context.meta["is_image"] else None  # pixels stay in [0, 1]
        config = PathConfig(
            method="greedy" if p.method == "geodesic" else p.method,
            step=p.step,
            threshold=p.threshold,
            max_steps=p.max_steps,
            dtype=DTYPES[p.dtype],
            box=box,
        ).check()
        parts = []
        for pos in positions:  # one pair at a time: a row never depends on its shard
            unit = context.units[pos]
            x0, y0 = self._point(context, unit["from"])
            x1, y1 = self._point(context, unit["to"])
            if p.flip_target:
                x1 = flip_horizontal(x1[None])[0]
            if p.method == "geodesic":
                from leafscope.foliation.geodesics import geodesic_paths

                geo = geodesic_paths(
                    model,
                    x0[None],
                    x1[None],
                    p.geodesic_config(box=box),
                    start_label=[y0],
                    end_label=[y1],
                )
                vertical = (geo.start_vertical_length[0], geo.vertical_length[0])
                parts.append(self._row(pos, unit, geo.tracked, vertical))
                continue
            state = start_paths(x0[None], x1[None], config, start_label=[y0], end_label=[y1])
            result = continue_paths(model, state).result()
            parts.append(self._row(pos, unit, result))
        return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    def _row(
        self,
        pos: int,
        unit: Mapping[str, str],
        result: Any,
        vertical: tuple[float, float] = (float("nan"), float("nan")),
    ) -> dict[str, np.ndarray]:
        keep = max(self.params.keep_points, self.params.frames)
        points = result.points[0]
        picks = evenly_spaced(len(points), keep)
        flat = points[picks].reshape(len(picks), -1).double().numpy()
        frames = np.full((keep, flat.shape[1]), np.nan)
        frames[: len(picks)] = flat
        steps = np.full(keep, -1.0)
        steps[: len(picks)] = [result.point_steps[0][k] for k in picks]
        trace = {
            "predicted": result.predicted[0],
            "max_prob": result.max_prob[0],
            "distance": result.distance[0],
            "tangent_fraction": result.tangent_fraction[0],
        }
        return {
            "unit": np.asarray([pos], dtype=np.int64),
            "start": np.asarray([unit["from"]], dtype=str),
            "end": np.asarray([unit["to"]], dtype=str),
            **path_rows(result),
            "curve_vertical_start": np.asarray([vertical[0]], dtype=np.float64),
            "curve_vertical_final": np.asarray([vertical[1]], dtype=np.float64),
            "trace": np.asarray([json.dumps(trace)], dtype=str),
            "frame_steps": steps[None],
            "frames": frames.reshape(1, -1),
        }

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        labelled = np.asarray(rows["end_label"]) >= 0
        match = np.asarray(rows["final_predicted"]) == np.asarray(rows["end_label"])
        return {
            "pairs": int(len(rows["unit"])),
            "reached_fraction": float(np.mean(np.asarray(rows["reached"], dtype=bool))),
            "median_start_distance": float(np.median(rows["start_distance"])),
            "median_final_distance": float(np.median(rows["final_distance"])),
            "median_relative_distance": float(np.median(rows["relative_distance"])),
            "median_length": float(np.median(rows["length"])),
            "end_class_match": float(np.mean(match[labelled])) if labelled.any() else None,
            "median_curve_vertical_final": _median_or_none(rows["curve_vertical_final"]),
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        return [
            f"{summary['pairs']} path(s): reached {summary['reached_fraction']:.2f}, median "
            f"distance {summary['median_start_distance']:.3f} -> "
            f"{summary['median_final_distance']:.3f} (relative "
            f"{summary['median_relative_distance']:.3f})"
            + (
                ""
                if summary.get("median_curve_vertical_final") is None
                else ", geodesic curve vertical length "
                f"{summary['median_curve_vertical_final']:.3f} of the distance"
            )
        ]

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        return {"paths": path_entries(rows)}

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        from leafscope.io import write_json, write_npz
        from leafscope.tasks._images import save_gif, save_strip

        folder = Path(folder)
        shape = tuple(context.meta["input_shape"])
        written = [write_json(folder / "path.json", {"summary": dict(summary),
                                                     "paths": path_entries(rows)})]  # fmt: skip
        for i, unit in enumerate(np.asarray(rows["unit"], dtype=np.int64)):
            steps = np.asarray(rows["frame_steps"][i])
            valid = steps >= 0
            points = np.asarray(rows["frames"][i]).reshape(len(steps), *shape)[valid]
            steps = steps[valid].astype(np.int64)
            trace = json.loads(str(rows["trace"][i]))
            stem = folder / f"path_{int(unit):03d}"
            written.append(
                write_npz(
                    stem.with_suffix(".npz"),
                    points=points.astype(np.float32),
                    steps=steps,
                    predicted=np.asarray(trace["predicted"])[steps],
                    max_prob=np.asarray(trace["max_prob"])[steps],
                    distance=np.asarray(trace["distance"])[steps],
                )
            )
            if not context.meta["is_image"]:
                continue
            captions = [
                f"{trace['predicted'][s]} ({trace['max_prob'][s]:.2f})\nstep {s}" for s in steps
            ]
            picks = evenly_spaced(len(steps), self.params.frames)
            written.append(
                save_strip(
                    [points[k] for k in picks],
                    [captions[k] for k in picks],
                    folder / f"{stem.name}_strip.png",
                )
            )
            flat = [c.replace("\n", " ") for c in captions]
            written.append(save_gif(list(points), flat, stem.with_suffix(".gif")))
        return written


def _median_or_none(column: Any) -> float | None:
    """The median of the finite entries (None when there are none: a first-order method)."""
    values = np.asarray(column, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def scalar(column: Any, i: int) -> Any:
    """Entry ``i`` of a column as a plain Python value (NumPy scalars unwrapped)."""
    value = np.asarray(column)[i]
    return value.item() if hasattr(value, "item") else value


def path_entries(rows: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per pair the JSON record of ``path --json`` (scalars and the per-step trace)."""
    out = []
    for i in range(len(rows["unit"])):
        entry: dict[str, Any] = {"from": str(rows["start"][i]), "to": str(rows["end"][i])}
        for name in path_columns():
            entry[name] = scalar(rows[name], i)
        for name in ("curve_vertical_start", "curve_vertical_final"):  # geodesic paths only
            if name in rows and np.isfinite(rows[name][i]):
                entry[name] = scalar(rows[name], i)
        entry.update(json.loads(str(rows["trace"][i])))
        steps = np.asarray(rows["frame_steps"][i])
        entry["point_steps"] = [int(s) for s in steps if s >= 0]
        out.append(entry)
    return out
