"""``leafscope walk``: horizontal paths between random pairs and vertical walks vs random lines."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    load_data_for,
    model_from_args,
    model_source,
    resolve_device,
    write_json,
)
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``walk`` sub-command."""
    p = subparsers.add_parser(
        "walk",
        help="measure horizontal paths (on the leaf) and vertical walks (across leaves)",
        description="Over N random pairs of images: fraction of horizontal paths reaching the "
        "threshold, median final distance (absolute and relative), length, and end-class match. "
        "Vertical walks (fixed random direction projected on ker G) against random straight "
        "lines of the same length: accuracy vs distance.",
    )
    add_model_arguments(p)
    p.add_argument("--pairs", type=int, default=20, help="random pairs (default: 20)")
    p.add_argument(
        "--method",
        default="greedy",
        help="comma-separated path methods: greedy, adaptive, rk4 (default: greedy)",
    )
    p.add_argument("--json", required=True, type=Path, help="output JSON file")
    add_data_arguments(p, "image data set")
    p.add_argument("--split", default="test", help="train or test (default: test)")
    p.add_argument("--pool", type=int, default=1000, help="first N images to draw from")
    p.add_argument("--step", type=float, default=0.1, help="path step length (default: 0.1)")
    p.add_argument("--threshold", type=float, default=1.0, help="stop distance (default: 1.0)")
    p.add_argument("--max-steps", type=int, default=5000, help="path step limit (default: 5000)")
    p.add_argument(
        "--vertical-points", type=int, default=100, help="images walked vertically (default: 100)"
    )
    p.add_argument(
        "--vertical-steps", type=int, default=1000, help="vertical steps of 0.1 (default: 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of pairs and directions")
    p.add_argument("--figures", type=Path, default=None, help="folder for PNG figures")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run :func:`leafscope.experiments.foliation.walk_experiment` and write OUT; 0 on success."""
    from leafscope.experiments.foliation import walk_experiment
    from leafscope.foliation import PathConfig, WalkConfig

    methods = tuple(m.strip() for m in args.method.split(",") if m.strip())
    if args.pool < 2:
        raise InputError(f"--pool must be >= 2 (got {args.pool})")
    device = resolve_device(args.device)
    model = model_from_args(args, device)
    data = load_data_for(model, args, args.split, limit=args.pool)
    box = (0.0, 1.0) if data.is_image else None  # pixels stay in [0, 1]; vectors are free
    path_config = PathConfig(
        step=args.step, threshold=args.threshold, max_steps=args.max_steps, box=box
    )
    walk_config = WalkConfig(steps=args.vertical_steps, seed=args.seed)
    res = walk_experiment(
        model,
        data.images,
        data.labels,
        pairs=args.pairs,
        methods=methods,
        path_config=path_config,
        vertical_points=args.vertical_points,
        walk_config=walk_config,
        seed=args.seed,
    )
    payload = res.to_json()
    payload["meta"].update(
        {"checkpoint": model_source(args), "data": data.describe(), "pool": args.pool}
    )
    write_json(args.json, payload)
    for name, s in res.horizontal.items():
        print(
            f"{name}: reached {s.reached_fraction:.2f}, median final distance "
            f"{s.median_final_distance:.3f} (relative {s.median_relative_distance:.3f}), "
            f"end class match {s.end_class_match:.2f}, {s.seconds:.0f} s"
        )
    for v, r in zip(res.vertical, res.random, strict=True):
        print(
            f"distance {v['distance']:.2f}: vertical accuracy {v['accuracy']:.3f}, "
            f"random {r['accuracy']:.3f}"
        )
    if args.figures:
        _figures(res, args.figures)
    print(f"wrote {args.json}")
    return 0


def _figures(res, folder: Path) -> None:

    from leafscope.report.figures.foliation import (
        accuracy_vs_distance,
        path_distance_figure,
        path_strip,
        walk_strip,
    )
    from leafscope.report.save import save_figure

    folder.mkdir(parents=True, exist_ok=True)
    figs = {f"paths_{m}.png": path_distance_figure(r) for m, r in res.paths.items()}
    first = next(iter(res.paths.values()))
    figs["path_strip.png"] = path_strip(first, 0)
    if res.walk is not None:
        figs["walk_strip.png"] = walk_strip(res.walk, 0)
        figs["accuracy_vs_distance.png"] = accuracy_vs_distance(res.vertical, res.random)
    for name, fig in figs.items():
        save_figure(fig, folder / name)
