"""The measured claims of the foliation talk, as functions returning result objects.

:func:`walk_experiment` runs horizontal paths between random pairs of images (one or more
methods) and vertical walks next to random straight lines of the same length.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.foliation._common import check_count
from leafscope.foliation.paths import PathConfig, PathResult, horizontal_paths, random_pairs
from leafscope.foliation.walks import WalkConfig, WalkResult, random_line_accuracy, vertical_walk
from leafscope.information import check_inputs

__all__ = ["HorizontalSummary", "WalkExperimentResult", "random_pairs", "walk_experiment"]


@dataclass(frozen=True)
class HorizontalSummary:
    """Summary of horizontal paths over pairs (distances in input units, pixels in [0, 1]).

    Medians follow numpy: the mean of the two middle values for an even number of pairs.

    Attributes:
        method: path method.
        pairs: number of pairs.
        reached_fraction: fraction of paths reaching the threshold.
        median_start_distance: median ``‖start − end‖``.
        median_final_distance: median ``‖x_final − end‖``.
        median_relative_distance: median of final / start distance.
        median_length: median Euclidean path length.
        end_class_match: fraction whose final point is classified as the target's true class.
        median_final_tangent_fraction: median of ``‖P_D(end − x)‖/‖end − x‖`` at the final point.
        seconds: wall-clock time of all paths of this method.
    """

    method: str
    pairs: int
    reached_fraction: float
    median_start_distance: float
    median_final_distance: float
    median_relative_distance: float
    median_length: float
    end_class_match: float
    median_final_tangent_fraction: float
    seconds: float

    @classmethod
    def from_result(cls, res: PathResult, seconds: float) -> HorizontalSummary:
        n = len(res)
        match = [res.predicted[i][-1] == res.end_label[i] for i in range(n)]
        return cls(
            method=res.config.method,
            pairs=n,
            reached_fraction=sum(res.reached) / n,
            median_start_distance=_median(res.start_distance),
            median_final_distance=_median(res.final_distance),
            median_relative_distance=_median(res.relative_distance),
            median_length=_median(res.length),
            end_class_match=sum(match) / n,
            median_final_tangent_fraction=_median(t[-1] for t in res.tangent_fraction),
            seconds=seconds,
        )

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class WalkExperimentResult:
    """Horizontal summaries per method, and the vertical-vs-random accuracy curves.

    ``to_json()`` has ``horizontal`` (the first method), ``methods`` (all), ``paths`` (per method,
    per pair), ``vertical`` and ``random`` (lists of ``{distance, accuracy}``), and ``meta``.
    """

    horizontal: dict[str, HorizontalSummary]
    vertical: list[dict]
    random: list[dict]
    paths: dict[str, PathResult] = field(repr=False)
    walk: WalkResult | None = field(repr=False)
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        first = next(iter(self.horizontal.values()))
        return {
            "horizontal": first.to_json(),
            "methods": {k: v.to_json() for k, v in self.horizontal.items()},
            "paths": {k: _per_path(v) for k, v in self.paths.items()},
            "vertical": self.vertical,
            "random": self.random,
            "meta": self.meta,
        }


def _median(values) -> float:
    return float(np.median(np.fromiter(values, dtype=np.float64)))


def _per_path(res: PathResult) -> list[dict]:
    """Per pair: distances, tangent fractions at start and end, labels and final class."""
    return [
        {
            "steps": len(res.distance[i]) - 1,
            "stop_reason": res.stop_reason[i],
            "start_distance": res.distance[i][0],
            "final_distance": res.distance[i][-1],
            "relative_distance": res.relative_distance[i],
            "tangent_fraction_start": res.tangent_fraction[i][0],
            "tangent_fraction_final": res.tangent_fraction[i][-1],
            "start_label": res.start_label[i] if res.start_label else -1,
            "end_label": res.end_label[i] if res.end_label else -1,
            "final_predicted": res.predicted[i][-1],
            "final_max_prob": res.max_prob[i][-1],
        }
        for i in range(len(res))
    ]


def walk_experiment(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    pairs: int = 20,
    methods: tuple[str, ...] = ("greedy",),
    path_config: PathConfig | None = None,
    vertical_points: int = 100,
    walk_config: WalkConfig | None = None,
    seed: int = 0,
) -> WalkExperimentResult:
    """Horizontal paths between random pairs and vertical walks against random lines.

    Args:
        model: classifier.
        images: ``(N, *shape)`` pool of points (e.g. test images in [0, 1]).
        labels: ``(N,)`` their true labels.
        pairs: number of random pairs for the horizontal paths.
        methods: path methods to run on the same pairs (``greedy``, ``adaptive``, ``rk4``).
        path_config: base settings (``method`` is replaced per method).
        vertical_points: number of images walked vertically (0: skip the vertical part).
        walk_config: vertical walk settings (default :class:`WalkConfig`).
        seed: seed of the pairs and of the walked images.

    Returns:
        :class:`WalkExperimentResult`.
    """
    check_inputs(images, "images")
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise InputError(f"need one label per image ({images.shape[0]}), got {labels.shape[0]}")
    if not methods:
        raise InputError("methods is empty: give at least one of greedy, adaptive, rk4")
    check_count(vertical_points, "vertical_points", 0)
    idx = random_pairs(images.shape[0], pairs, seed)
    start, end = images[idx[:, 0]], images[idx[:, 1]]
    base = path_config or PathConfig()
    summaries: dict[str, HorizontalSummary] = {}
    results: dict[str, PathResult] = {}
    for method in methods:
        cfg = replace(base, method=method).check()
        t0 = time.perf_counter()
        res = horizontal_paths(
            model,
            start,
            end,
            cfg,
            start_label=labels[idx[:, 0]].tolist(),
            end_label=labels[idx[:, 1]].tolist(),
        )
        summaries[method] = HorizontalSummary.from_result(res, time.perf_counter() - t0)
        results[method] = res
    vertical: list[dict] = []
    random: list[dict] = []
    walk = None
    if vertical_points:
        gen = torch.Generator().manual_seed(seed + 1)
        pick = torch.randperm(images.shape[0], generator=gen)[:vertical_points]
        walk = vertical_walk(model, images[pick], walk_config, labels=labels[pick])
        rand_acc = random_line_accuracy(model, images[pick], labels[pick], walk.distance, seed=seed)
        vertical = [
            {k: row[k] for k in ("step", "distance", "accuracy", "prediction_kept")}
            for row in walk.curve()
        ]
        random = [
            {"step": row["step"], "distance": row["distance"], "accuracy": float(a)}
            for row, a in zip(vertical, rand_acc, strict=True)
        ]
    meta = {
        "pairs": idx.tolist(),
        "path_config": base.to_json(),
        "walk_config": (walk_config or WalkConfig()).to_json() if vertical_points else None,
        "vertical_points": vertical_points,
        "seed": seed,
    }
    return WalkExperimentResult(summaries, vertical, random, results, walk, meta)
