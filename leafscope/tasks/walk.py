"""``walk``: horizontal paths between random pairs, and vertical walks against random lines.

Units: every (method, pair) of horizontal paths between seeded random pairs of the first
``pool`` points (:mod:`leafscope.foliation.paths`), then every vertical walk: a seeded point
moved ``vertical_steps`` times by 0.1 along a fixed random direction projected on ker G(x)
(:func:`leafscope.foliation.vertical_walk`), next to the same point moved as far along a random
straight line (:func:`leafscope.foliation.random_line_accuracy`). Each unit is computed on its
own, so a row never depends on how the units are cut into shards.

One row per unit (``kind`` ``path`` or ``walk``; the other kind's columns are -1 or NaN):
path rows hold the path's labels, steps, distances (input units), length, final class and
tangent fractions; walk rows hold per record (every 50 steps) the distance moved, whether the
prediction is right and unchanged, the max probability, the leaf component of the move, and
whether the random line's end point is classified right. The summary has the horizontal
medians per method and the accuracy-against-distance curves (``vertical``, ``random``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.errors import InputError
from leafscope.foliation.paths import METHODS
from leafscope.tasks.base import Context, Params, Task, param, register_task
from leafscope.tasks.path import path_columns, path_rows, scalar

__all__ = ["WalkParams", "WalkTask"]

#: Vertical steps between two records of a walk, and the vertical step length.
RECORD_EVERY = 50
VERTICAL_STEP = 0.1

_CURVES = (
    "walk_distance",
    "walk_correct",
    "walk_kept",
    "walk_max_prob",
    "walk_leaf_component",
    "random_correct",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WalkParams(Params):
    """Parameters of :class:`WalkTask` (distances in input units: pixels in [0, 1])."""

    pairs: int = param(20, help="random pairs of points for the horizontal paths")
    method: tuple[str, ...] = param(
        ("greedy",), help="comma-separated path methods: greedy, adaptive, rk4", metavar="M[,M]"
    )
    pool: int | None = param(
        1000, help="draw pairs and walked points from the first N points ('all': every point)"
    )
    step: float = param(0.1, help="path step length")
    threshold: float = param(1.0, help="a path stops at this distance to its end")
    max_steps: int = param(5000, help="path step limit")
    vertical_points: int = param(100, help="points walked vertically (0: no walks)")
    vertical_steps: int = param(1000, help=f"vertical steps of {VERTICAL_STEP} per walk")
    seed: int = param(0, help="seed of the pairs, the walked points and the directions")

    def validate(self) -> None:
        if self.pairs < 1:
            raise InputError(f"pairs must be >= 1 (got {self.pairs})")
        if not self.method:
            raise InputError("method needs at least one of greedy, adaptive, rk4")
        bad = [m for m in self.method if m not in METHODS]
        if bad or len(set(self.method)) != len(self.method):
            raise InputError(
                f"method must be distinct names among {', '.join(METHODS)} (got "
                f"{','.join(self.method)})"
            )
        if self.pool is not None and self.pool < 2:
            raise InputError(f"pool must be >= 2 points (got {self.pool})")
        if not (np.isfinite(self.step) and self.step > 0):
            raise InputError(f"step must be a number > 0 (got {self.step})")
        if not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise InputError(f"threshold must be a number >= 0 (got {self.threshold})")
        for name in ("max_steps", "vertical_points", "vertical_steps", "seed"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0 (got {getattr(self, name)})")

    def record_steps(self) -> list[int]:
        """The steps at which a vertical walk is recorded."""
        n = self.vertical_steps
        return [k for k in range(n + 1) if k % RECORD_EVERY == 0 or k == n]


@register_task
class WalkTask(Task):
    """Horizontal paths between random pairs and vertical walks against random lines."""

    name = "walk"
    Params = WalkParams
    per_point = False
    summary = "measure horizontal paths (on the leaf) and vertical walks (across leaves)"
    description = (
        "Over N seeded random pairs of points: fraction of horizontal paths reaching the "
        "threshold, median final distance (absolute and relative), length and end-class match, "
        "per method. Vertical walks (a fixed random direction projected on ker G) against "
        "random straight lines of the same length: accuracy against distance. Rows: one per "
        "(method, pair) and one per walk."
    )
    columns = (
        "unit",
        "kind",
        "method",
        "pair",
        "start_index",
        "end_index",
        *path_columns(),
        "walk",
        "walk_index",
        "walk_label",
        *_CURVES,
    )

    def units(self, context: Context) -> list[Any]:
        from leafscope.foliation import random_pairs

        p: WalkParams = self.params
        data = context.data()
        n = len(data) if p.pool is None else min(p.pool, len(data))
        if n < 2:
            raise InputError(f"{data.name} has {n} point(s): paths need at least 2")
        idx = random_pairs(n, p.pairs, p.seed).tolist()
        units: list[Any] = [
            {"kind": "path", "method": m, "pair": k, "start": i, "end": j}
            for m in p.method
            for k, (i, j) in enumerate(idx)
        ]
        gen = torch.Generator().manual_seed(p.seed + 1)
        pick = torch.randperm(n, generator=gen)[: p.vertical_points].tolist()
        units += [{"kind": "walk", "walk": w, "index": i} for w, i in enumerate(pick)]
        return units

    def prepare(self, context: Context) -> dict[str, Any]:
        data = context.data()
        walks = sum(1 for u in context.units if u["kind"] == "walk")
        return {
            "is_image": bool(data.is_image),
            "input_numel": int(np.prod(data.input_shape)),
            "walks": walks,
        }

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        parts = []
        for pos in positions:  # one unit at a time: a row never depends on its shard
            unit = context.units[pos]
            if unit["kind"] == "path":
                parts.append(self._path(pos, unit, context))
            else:
                parts.append(self._walk(pos, unit, context))
        return {k: np.concatenate([np.asarray(part[k]) for part in parts]) for k in self.columns}

    def _blank(self, pos: int, kind: str) -> dict[str, Any]:
        k = len(self.params.record_steps())
        row: dict[str, Any] = {
            "unit": [pos],
            "kind": np.asarray([kind], dtype=str),
            "method": np.asarray([""], dtype=str),
            "walk": [-1],
            "walk_index": [-1],
            "walk_label": [-1],
            "pair": [-1],
            "start_index": [-1],
            "end_index": [-1],
        }
        for name in ("start_label", "end_label", "steps", "final_predicted"):
            row[name] = [-1]
        row["stop_reason"] = np.asarray([""], dtype=str)
        row["reached"] = [False]
        for name in path_columns():
            row.setdefault(name, [np.nan])
        for name in _CURVES:
            row[name] = np.full((1, k), np.nan)
        return {
            name: np.asarray(v, dtype=np.int64) if isinstance(v, list) and type(v[0]) is int else v
            for name, v in row.items()
        }

    def _path(self, pos: int, unit: Mapping[str, Any], context: Context) -> dict[str, Any]:
        from leafscope.foliation import PathConfig, horizontal_paths

        p: WalkParams = self.params
        x, y = context.data().take([unit["start"], unit["end"]])
        config = PathConfig(
            method=unit["method"],
            step=p.step,
            threshold=p.threshold,
            max_steps=p.max_steps,
            box=(0.0, 1.0) if context.meta["is_image"] else None,  # pixels stay in [0, 1]
        ).check()
        result = horizontal_paths(
            context.model(),
            x[:1],
            x[1:],
            config,
            start_label=[int(y[0])],
            end_label=[int(y[1])],
        )
        row = self._blank(pos, "path")
        row.update(path_rows(result))
        row["method"] = np.asarray([unit["method"]], dtype=str)
        for key, column in (("pair", "pair"), ("start", "start_index"), ("end", "end_index")):
            row[column] = np.asarray([unit[key]], dtype=np.int64)
        return row

    def _walk(self, pos: int, unit: Mapping[str, Any], context: Context) -> dict[str, Any]:
        from leafscope.foliation import WalkConfig, random_line_accuracy, vertical_walk

        p: WalkParams = self.params
        model = context.model()
        x, y = context.data().take([unit["index"]])
        w, walks, d = int(unit["walk"]), int(context.meta["walks"]), int(x[0].numel())
        # the directions of all walks drawn at once from the seed, this walk's row used, as a
        # batched run of every walk draws them
        gen = torch.Generator().manual_seed(p.seed)
        direction = torch.randn((walks, d), generator=gen, dtype=torch.float32)[w]
        config = WalkConfig(
            steps=p.vertical_steps, step=VERTICAL_STEP, record_every=RECORD_EVERY, seed=p.seed
        )
        walk = vertical_walk(model, x, config, labels=y, direction=direction)
        gen = torch.Generator().manual_seed(p.seed)
        line = torch.randn((walks, d), generator=gen, dtype=torch.float64)[w : w + 1]
        random_correct = random_line_accuracy(model, x, y, walk.distance, directions=line)
        row = self._blank(pos, "walk")
        row["walk"] = np.asarray([w], dtype=np.int64)
        row["walk_index"] = np.asarray([unit["index"]], dtype=np.int64)
        row["walk_label"] = y.numpy().astype(np.int64)
        row["walk_distance"] = walk.distance.numpy()
        row["walk_correct"] = (walk.predicted == walk.labels[:, None]).double().numpy()
        row["walk_kept"] = (walk.predicted == walk.predicted[:, :1]).double().numpy()
        row["walk_max_prob"] = walk.max_prob.numpy()
        row["walk_leaf_component"] = walk.leaf_component.numpy()
        row["random_correct"] = random_correct.double().numpy()[None]
        return row

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        kind = np.asarray(rows["kind"]).astype(str)
        method = np.asarray(rows["method"]).astype(str)
        methods = {}
        for m in self.params.method:
            sel = (kind == "path") & (method == m)
            methods[m] = _horizontal(rows, sel, m)
        steps = self.params.record_steps()
        vertical, random = [], []
        walks = kind == "walk"
        if walks.any():
            dist = np.asarray(rows["walk_distance"])[walks].mean(axis=0)
            acc = np.asarray(rows["walk_correct"])[walks].mean(axis=0)
            kept = np.asarray(rows["walk_kept"])[walks].mean(axis=0)
            rand = np.asarray(rows["random_correct"])[walks].mean(axis=0)
            for k, step in enumerate(steps):
                common = {"step": step, "distance": float(dist[k])}
                vertical.append(
                    {**common, "accuracy": float(acc[k]), "prediction_kept": float(kept[k])}
                )
                random.append({**common, "accuracy": float(rand[k])})
        return {
            "horizontal": methods[self.params.method[0]],
            "methods": methods,
            "walks": int(walks.sum()),
            "vertical": vertical,
            "random": random,
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = [
            f"{name}: reached {s['reached_fraction']:.2f}, median final distance "
            f"{s['median_final_distance']:.3f} (relative {s['median_relative_distance']:.3f}), "
            f"end class match {s['end_class_match']:.2f}"
            for name, s in summary["methods"].items()
        ]
        lines += [
            f"distance {v['distance']:.2f}: vertical accuracy {v['accuracy']:.3f}, "
            f"random {r['accuracy']:.3f}"
            for v, r in zip(summary["vertical"], summary["random"], strict=True)
        ]
        return lines

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        kind = np.asarray(rows["kind"]).astype(str)
        method = np.asarray(rows["method"]).astype(str)
        paths = {}
        for m in self.params.method:
            sel = np.flatnonzero((kind == "path") & (method == m))
            paths[m] = [
                {
                    "pair": [int(rows["start_index"][i]), int(rows["end_index"][i])],
                    **{c: scalar(rows[c], i) for c in path_columns()},
                }
                for i in sel
            ]
        return {
            "horizontal": summary["horizontal"],
            "methods": summary["methods"],
            "vertical": summary["vertical"],
            "random": summary["random"],
            "paths": paths,
        }

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        from leafscope.io import write_json

        document = {"summary": dict(summary), **self.payload(rows, summary, context)}
        return [write_json(Path(folder) / "walk.json", document)]


def _horizontal(rows: Mapping[str, np.ndarray], sel: np.ndarray, method: str) -> dict[str, Any]:
    """Medians over the paths ``sel`` of one method (numpy medians: the mean of the two middle
    values for an even count)."""

    def median(name: str) -> float:
        return float(np.median(np.asarray(rows[name], dtype=np.float64)[sel]))

    match = np.asarray(rows["final_predicted"])[sel] == np.asarray(rows["end_label"])[sel]
    return {
        "method": method,
        "pairs": int(sel.sum()),
        "reached_fraction": float(np.mean(np.asarray(rows["reached"], dtype=bool)[sel])),
        "median_start_distance": median("start_distance"),
        "median_final_distance": median("final_distance"),
        "median_relative_distance": median("relative_distance"),
        "median_length": median("length"),
        "end_class_match": float(np.mean(match)),
        "median_final_tangent_fraction": median("tangent_fraction_final"),
    }
