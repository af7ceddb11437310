"""The leaf-path question (issue 14): why greedy horizontal paths stall, settled both ways.

ReLU side (:func:`region_constancy`, :func:`path_regions`): D_x = span{J_i − J_k} is constant on
each linear region; count the regions a greedy path crosses and how much of ``end − start`` the
crossed D's span. Bracket side (:func:`bracket_span` from the foliation package,
:func:`connect_experiment`): the rank of the iterated brackets, and the fraction of pairs that a
path with commutator loops connects next to the greedy path. Second order
(:func:`geodesic_experiment`, issue 21): λ-geodesics of the penalised metric and the
horizontal paths that track them (:mod:`leafscope.foliation.geodesics`), next to the greedy
path on the same pairs.

Run ``python -m leafscope.experiments.leafpath regions|span|connect|geodesic --checkpoint CKPT
--json OUT``.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from leafscope.foliation.bracket_paths import BracketPathConfig, bracket_paths, bracket_span
from leafscope.foliation.geodesics import (
    GeodesicConfig,
    frozen_geodesic_steps,
    geodesic_paths,
    horizontal_part,
    leaf_bases,
)
from leafscope.foliation.paths import PathConfig, PathResult, horizontal_paths
from leafscope.foliation.regions import (
    activation_pattern,
    distribution_basis,
    pattern_changes,
    principal_angles,
    span_fraction,
)
from leafscope.information import check_inputs
from leafscope.io import write_json

__all__ = [
    "connect_experiment",
    "geodesic_experiment",
    "main",
    "path_regions",
    "region_constancy",
]


def _unit_directions(shape: tuple[int, ...], n: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn((n, *shape), generator=gen, dtype=torch.float64)
    return d / d.flatten(1).norm(dim=1).reshape(-1, *([1] * len(shape)))


def _constancy_one(model, xi: Tensor, u: Tensor, eps: float, far, rtol: float) -> dict:
    p0 = activation_pattern(model, xi)
    d0 = distribution_basis(model, xi, rtol=rtol)[0]
    row: dict = {"rank": int(d0.shape[0]), "inside_found": False}
    e = eps
    for _ in range(21):
        if torch.equal(activation_pattern(model, xi + e * u), p0):
            row["inside_found"] = True
            break
        e *= 0.5
    d1 = distribution_basis(model, xi + e * u, rtol=rtol)[0]
    row.update(inside_eps=e, inside_max_angle=float(principal_angles(d0, d1, rtol).max()))
    row.update(across_t=None, across_changed_units=0, across_max_angle=None)
    for t in far:
        p1 = activation_pattern(model, xi + t * u)
        if not torch.equal(p1, p0):
            d2 = distribution_basis(model, xi + t * u, rtol=rtol)[0]
            row.update(
                across_t=t,
                across_changed_units=int((p1 != p0).sum()),
                across_max_angle=float(principal_angles(d0, d2, rtol).max()),
            )
            break
    return row


def region_constancy(
    model: nn.Module,
    x: Tensor,
    *,
    eps: float = 1e-7,
    far: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    jitter: float = 1e-2,
    rtol: float = 1e-10,
    seed: int = 0,
) -> list[dict]:
    """Per point: the largest principal angle between D_x and D_{x+δ} inside and across regions.

    Each point is tested as given and moved by ``jitter``·N(0, I) (float64, no clamp): images
    with flat black backgrounds tie inside max-pooling windows, i.e. they lie *on* region
    boundaries, and the jittered point is in general position. Inside: ``δ = eps·u`` (u a random
    unit direction), halved until the pattern is unchanged (at most 20 times; ``inside_found``
    says whether it was). Across: ``δ = t·u`` for the first ``t`` in ``far`` that changes it.

    Returns:
        One dict per point with keys ``given`` and ``jittered``, each holding ``rank``,
        ``inside_found``, ``inside_eps``, ``inside_max_angle`` (radians), ``across_t``,
        ``across_changed_units`` (pattern entries that differ) and ``across_max_angle``.
    """
    check_inputs(x, "points")
    x = x.detach().to(torch.float64)
    shape = tuple(x.shape[1:])
    dirs = _unit_directions(shape, x.shape[0], seed)
    gen = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64) * jitter
    out = []
    for i in range(x.shape[0]):
        xi, u = x[i : i + 1], dirs[i : i + 1]
        out.append(
            {
                "given": _constancy_one(model, xi, u, eps, far, rtol),
                "jittered": _constancy_one(model, xi + noise[i : i + 1], u, eps, far, rtol),
            }
        )
    return out


def path_regions(
    model: nn.Module, res: PathResult, end: Tensor, *, rtol: float = 1e-10, prefixes=(1, 10, 100)
) -> list[dict]:
    """Per recorded path: regions crossed and the span of the crossed D's.

    Args:
        model: the piecewise-linear model the paths ran on.
        res: :class:`PathResult` recorded with ``record_every=1`` (every point kept).
        end: ``(B, *shape)`` the end points of the paths.
        rtol: rank tolerance of each D_x basis and of the union.
        prefixes: also report the span fraction of the first k distinct regions.

    Returns:
        One dict per path: ``points``, ``pattern_changes``, ``distinct_regions``,
        ``span_fraction`` (of end − start in the union of the crossed D's), ``span_bound``
        (``sqrt(1 − fraction²)``: the least relative distance reachable inside that union),
        ``path_relative_distance``, ``displacement_in_span`` (fraction of x_final − start in the
        union: 1 unless the box clamp acted), ``span_rank`` and the prefix fractions.
    """
    out = []
    for i, pts in enumerate(res.points):
        pts = pts.to(torch.float64)
        pats = activation_pattern(model, pts)
        changes, distinct = pattern_changes(pats)
        first = [0] + [t for t in range(1, len(pats)) if not torch.equal(pats[t], pats[t - 1])]
        keep, seen = [], set()
        for t in first:  # one point per distinct region, in the order the path enters them
            key = pats[t].numpy().tobytes()
            if key not in seen:
                seen.add(key)
                keep.append(t)
        bases = distribution_basis(model, pts[keep], rtol=rtol)
        v = (end[i].to(torch.float64) - pts[0]).reshape(-1)
        frac = span_fraction(bases, v, rtol)
        moved = (pts[-1] - pts[0]).reshape(-1)
        stacked = torch.cat(bases)
        out.append(
            {
                "points": len(pts),
                "pattern_changes": changes,
                "distinct_regions": distinct,
                "span_rank": int(torch.linalg.matrix_rank(stacked, rtol=rtol)),
                "span_fraction": frac,
                "span_bound": math.sqrt(max(0.0, 1 - frac**2)),
                "path_relative_distance": res.relative_distance[i],
                "displacement_in_span": span_fraction(bases, moved, rtol)
                if moved.norm() > 0
                else 1.0,
                "prefix_fraction": {
                    str(k): span_fraction(bases[:k], v, rtol) for k in prefixes if k < len(bases)
                },
            }
        )
    return out


def _summary(rel: list[float], final: list[float], threshold: float, rel_threshold: float) -> dict:
    return {
        "pairs": len(rel),
        "connected_fraction": float(np.mean([d <= threshold for d in final])),
        "within_relative_fraction": float(np.mean([r <= rel_threshold for r in rel])),
        "median_relative_distance": float(np.median(rel)),
        "min_relative_distance": float(np.min(rel)),
        "relative_distance": rel,
    }


def _greedy(model, start, end, greedy: PathConfig, rel_threshold: float) -> tuple[dict, Any]:
    """The reference greedy paths of a comparison: ``({greedy_config, rel_threshold, greedy:
    summary + seconds}, PathResult)``."""
    out: dict = {"greedy_config": greedy.check().to_json(), "rel_threshold": rel_threshold}
    t0 = time.perf_counter()
    res = horizontal_paths(model, start, end, greedy)
    out["greedy"] = _summary(
        res.relative_distance, res.final_distance, greedy.threshold, rel_threshold
    )
    out["greedy"]["seconds"] = time.perf_counter() - t0
    return out, res


def connect_experiment(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    *,
    greedy: PathConfig | None = None,
    bracket: BracketPathConfig | None = None,
    rel_threshold: float = 0.5,
) -> dict:
    """Greedy paths, leaf-only paths (loops off) and bracket paths on the same pairs.

    A pair is *connected* when the final distance is ≤ the threshold of the paths (1.0 by
    default); ``within_relative_fraction`` counts final / start distance ≤ ``rel_threshold``.

    Returns:
        ``{"greedy": summary, "leaf_only": summary, "bracket": summary + loops/steps, ...}``.
    """
    greedy = greedy or PathConfig(max_steps=600)
    bracket = bracket or BracketPathConfig()
    out, _ = _greedy(model, start, end, greedy, rel_threshold)
    for name, loops in (("leaf_only", False), ("bracket", True)):
        cfg = BracketPathConfig(**{**bracket.to_json(), "loops": loops, "box": bracket.box})
        b = bracket_paths(model, start, end, cfg)
        row = _summary(
            b.relative_distance, [d[-1] for d in b.distance], cfg.threshold, rel_threshold
        )
        row.update(
            seconds=b.seconds,
            loops=[m.count("loop") for m in b.moves],
            steps=[m.count("step") for m in b.moves],
            stop_reason=b.stop_reason,
            config=cfg.to_json(),
        )
        out[name] = row
    return out


def frozen_line_cost(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    *,
    segments: int = 128,
    penalties: tuple[float, ...] = (1e2, 1e4, 1e6),
) -> list[dict]:
    """What a nearly horizontal curve through the straight line's D's would cost.

    D is frozen at the ``segments`` midpoints of the straight segment (float64) and the frozen
    λ-geodesic is solved for each λ: its vertical length and Euclidean length (both relative to
    the distance). If the frozen D's jointly carried ``end − start`` cheaply, the length would
    stay near 1 while the vertical part vanished; a length growing like √λ means the gap lies
    in directions the D's reach only weakly (this ignores that moving the curve changes D).
    """
    out = []
    cast = copy.deepcopy(model).double().eval()  # the caller's model stays as it is
    for i in range(start.shape[0]):
        x0 = start[i].reshape(-1).double()
        gap = end[i].reshape(-1).double() - x0
        t = torch.linspace(0, 1, segments + 1, dtype=torch.float64)[:, None]
        mids = x0 + 0.5 * (t[1:] + t[:-1]) * gap
        with torch.no_grad():
            bases = leaf_bases(cast, mids, input_shape=tuple(start.shape[1:]))
        row = {}
        for lam in penalties:
            steps = frozen_geodesic_steps(bases, gap, lam, 1e-10)
            horiz = horizontal_part(bases, steps)
            scale = float(gap.norm())
            row[f"{lam:g}"] = {
                "vertical_length": float((steps - horiz).norm(dim=1).sum()) / scale,
                "length": float(steps.norm(dim=1).sum()) / scale,
            }
        out.append(row)
    return out


def geodesic_experiment(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    *,
    greedy: PathConfig | None = None,
    geodesic: GeodesicConfig | None = None,
    rel_threshold: float = 0.5,
    progress=None,
) -> dict:
    """Greedy paths and tracked λ-geodesics on the same pairs.

    Returns:
        ``{"greedy": summary, "geodesic": summary + per-stage medians and per-pair records}``;
        a pair is connected when its (tracked) path ends within the threshold (1.0 by default).
    """
    greedy = (greedy or PathConfig(max_steps=200)).check()
    geodesic = (geodesic or GeodesicConfig()).check()
    out, res = _greedy(model, start, end, greedy, rel_threshold)
    geo = geodesic_paths(model, start, end, geodesic, progress=progress)
    tracked = geo.tracked
    row = _summary(
        tracked.relative_distance, tracked.final_distance, geodesic.threshold, rel_threshold
    )
    stages = []
    for k, penalty in enumerate(geodesic.penalties):
        per = [s[k] for s in geo.stages]
        stages.append(
            {
                "penalty": penalty,
                "median_vertical_length": float(np.median([r["vertical_length"] for r in per])),
                "median_energy_over_penalty": float(
                    np.median([r["energy"] / penalty for r in per])
                ),
                "median_length": float(np.median([r["length"] for r in per])),
                "median_iterations": float(np.median([r["iterations"] for r in per])),
                "accepted_newton": int(sum(r["accepted"]["newton"] for r in per)),
                "accepted_lagged": int(sum(r["accepted"]["lagged"] for r in per)),
                "pairs_moved": int(sum(sum(r["accepted"].values()) > 0 for r in per)),
            }
        )
    row.update(
        seconds=float(sum(geo.seconds)),
        start_vertical_length=geo.start_vertical_length,
        median_start_vertical_length=float(np.median(geo.start_vertical_length)),
        stages=stages,
        steps=[len(d) - 1 for d in tracked.distance],
        closer_than_greedy=int(
            sum(
                a < b for a, b in zip(tracked.relative_distance, res.relative_distance, strict=True)
            )
        ),
        pairs_detail=geo.to_json()["pairs"],
    )
    for entry in row["pairs_detail"]:  # the per-step traces are long: keep the scalars
        entry["tracked"] = {k: v for k, v in entry["tracked"].items() if not isinstance(v, list)}
    out["geodesic"] = row
    out["frozen_line"] = frozen_line_cost(model, start, end, segments=geodesic.segments)
    return out


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes numbers such as 10,100,1000, not {text!r}"
        ) from None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m leafscope.experiments.leafpath", description=__doc__
    )
    p.add_argument("what", choices=("regions", "span", "connect", "geodesic"))
    p.add_argument("--checkpoint", type=Path, required=True, help="a leafscope train checkpoint")
    p.add_argument("--json", type=Path, required=True, help="output JSON file")
    p.add_argument("--pairs", type=int, default=10, help="random pairs of test images")
    p.add_argument(
        "--points", type=int, default=5, help="points (regions: test images; span: noise)"
    )
    p.add_argument("--pool", type=int, default=1000, help="first N test images to draw from")
    p.add_argument("--max-steps", type=int, default=600, help="greedy steps (step 0.1)")
    p.add_argument("--bracket-steps", type=int, default=100, help="moves of a bracket path")
    p.add_argument("--bracket-step", type=float, default=0.1, help="longest step inside D")
    p.add_argument(
        "--refresh", type=int, default=1, help="recompute the brackets every K loops (connect)"
    )
    p.add_argument(
        "--levels", type=int, default=3, choices=(1, 2, 3, 4), help="bracket levels (span)"
    )
    p.add_argument(
        "--chunk-size", type=int, default=None, help="span: directions differentiated at once"
    )
    p.add_argument("--inputs", default="noise", help="span: noise (uniform) or data (test images)")
    p.add_argument("--segments", type=int, default=128, help="geodesic: pieces of the curve")
    p.add_argument(
        "--penalties",
        type=_numbers,
        default=(10.0, 100.0, 1000.0),
        help="geodesic: the λ of each stage, increasing, comma-separated",
    )
    p.add_argument("--iterations", type=int, default=20, help="geodesic: iterations per stage")
    p.add_argument(
        "--relaxation", type=float, default=1.0, help="geodesic: fraction of each move tried first"
    )
    p.add_argument(
        "--no-box", action="store_true", help="geodesic: let the curve leave the pixel box"
    )
    p.add_argument(
        "--lagged",
        action="store_true",
        help="geodesic: only the lagged move (no derivative of the metric)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.pairs < 1 or args.points < 1:  # this script's own command line: its flags
        p.error(f"--pairs and --points must be >= 1 (got {args.pairs}, {args.points})")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one part of the experiment and write its JSON; 0 on success."""
    from leafscope.data import load_images
    from leafscope.experiments.foliation import random_pairs
    from leafscope.models import load_model

    args = _parse(argv)
    model = load_model(args.checkpoint)
    test = load_images("mnist", "test", limit=args.pool)
    idx = random_pairs(test.images.shape[0], args.pairs, args.seed)
    start, end = test.images[idx[:, 0]], test.images[idx[:, 1]]
    payload: dict = {"settings": {k: str(v) for k, v in vars(args).items()}}
    t0 = time.perf_counter()
    if args.what == "regions":
        payload["constancy"] = region_constancy(model, test.images[: args.points], seed=args.seed)
        res = horizontal_paths(model, start, end, PathConfig(max_steps=args.max_steps))
        payload["paths"] = path_regions(model, res, end)
    elif args.what == "span":
        gen = torch.Generator().manual_seed(args.seed)
        shape = tuple(test.images.shape[1:])
        x = torch.rand((args.points, *shape), generator=gen)
        if args.inputs == "data":
            x = test.images[: args.points]
        payload["span"] = bracket_span(
            model, x, levels=args.levels, chunk_size=args.chunk_size, meta={"inputs": args.inputs}
        )
        payload["span"] = payload["span"].to_json()
    elif args.what == "geodesic":
        cfg = GeodesicConfig(
            segments=args.segments,
            penalties=args.penalties,
            iterations=args.iterations,
            relaxation=args.relaxation,
            box=None if args.no_box else (0.0, 1.0),
            metric_derivative=not args.lagged,
        )

        def show(pair, stage, penalty, record):
            print(
                f"pair {pair} λ={penalty:g}: vertical {record['vertical_length']:.3f}, "
                f"length {record['length']:.3f}, {record['iterations']} iterations",
                flush=True,
            )

        payload["geodesic"] = geodesic_experiment(
            model,
            start,
            end,
            greedy=PathConfig(max_steps=args.max_steps),
            geodesic=cfg,
            progress=show,
        )
    else:
        cfg = BracketPathConfig(
            max_steps=args.bracket_steps, step=args.bracket_step, refresh=args.refresh
        )
        payload["connect"] = connect_experiment(
            model, start, end, greedy=PathConfig(max_steps=args.max_steps), bracket=cfg
        )
    payload["seconds"] = time.perf_counter() - t0
    write_json(args.json, payload)
    print(f"wrote {args.json} ({payload['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
