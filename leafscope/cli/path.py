"""``leafscope path``: a horizontal path between two images, as a strip, an animation and JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    DTYPES,
    add_data_dir_argument,
    add_device_argument,
    add_model_arguments,
    add_transform_arguments,
    load_data,
    model_from_args,
    model_source,
    resolve_device,
    write_json,
)
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``path`` sub-command."""
    p = subparsers.add_parser(
        "path",
        help="move from one image to another along the leaf (horizontal path)",
        description="Horizontal path from --from to --to: each step projects (end - x) on "
        "D_x = Im G(x), normalises it, steps (and clamps images to [0, 1]). Writes "
        "DIR/path_strip.png, DIR/path.gif (images, when Pillow is installed), DIR/path.json "
        "and DIR/state.pt (resumable).",
    )
    add_model_arguments(p)
    p.add_argument("--from", dest="start", required=True, help="start point, e.g. mnist:test:0")
    p.add_argument("--to", dest="end", required=True, help="end point, e.g. mnist:test:1")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--json", type=Path, default=None, help="also write the path JSON here")
    p.add_argument(
        "--method", default="greedy", help="greedy (reference), adaptive or rk4 (default: greedy)"
    )
    p.add_argument("--step", type=float, default=0.1, help="step length (default: 0.1)")
    p.add_argument("--threshold", type=float, default=1.0, help="stop distance (default: 1.0)")
    p.add_argument("--max-steps", type=int, default=5000, help="step limit (default: 5000)")
    p.add_argument(
        "--dtype", default="float32", choices=sorted(DTYPES), help="path dtype (default: float32)"
    )
    p.add_argument(
        "--flip-target",
        action="store_true",
        help="go to the left-right mirror of --to (a symbol not in the data set)",
    )
    p.add_argument("--frames", type=int, default=10, help="frames in the strip (default: 10)")
    p.add_argument(
        "--include-points", action="store_true", help="store every recorded point in the JSON"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from DIR/state.pt of an interrupted run"
    )
    add_data_dir_argument(p)
    add_transform_arguments(p)
    add_device_argument(p)
    p.set_defaults(func=run)


def load_point_for(model, args: argparse.Namespace, spec: str) -> tuple:
    """The point ``NAME:SPLIT:INDEX`` with the data flags of ``args`` (``--grey``,
    ``--resize``), checked against ``model``; ``(point (C, H, W) or (D,), label, dataset)``."""
    from leafscope.data import check_model_input, parse_point_spec

    name, split, index = parse_point_spec(spec)
    data = load_data(args, split, limit=index + 1, name=name)
    if index >= len(data):
        raise InputError(
            f"point {spec!r}: index {index} is out of range, {name}:{split} has {len(data)} points "
            f"(valid 0..{len(data) - 1})"
        )
    check_model_input(model, data, source=f"the point {spec}")
    return data.images[index], int(data.labels[index]), data


def run(args: argparse.Namespace) -> int:
    """Compute the path, save state every 100 steps, write figures and JSON; 0 on success."""

    from leafscope.foliation import PathConfig, PathState, continue_paths, flip_horizontal
    from leafscope.report.figures.foliation import path_strip, save_path_animation
    from leafscope.report.save import save_figure

    device = resolve_device(args.device)
    model = model_from_args(args, device)
    state_file = args.out / "state.pt"
    data = None
    if args.resume:
        state = PathState.load(state_file)
    else:
        x0, y0, data = load_point_for(model, args, args.start)
        x1, y1, _ = load_point_for(model, args, args.end)
        if x0.shape != x1.shape:
            raise InputError(
                f"--from {args.start} has shape {tuple(x0.shape)} but --to {args.end} has "
                f"{tuple(x1.shape)}: pick points of one shape (or pass --grey / --resize H,W)"
            )
        if args.flip_target:
            if not data.is_image:
                raise InputError(
                    f"--flip-target mirrors images left-right, but {args.start} is a vector of "
                    f"shape {tuple(x0.shape)}: drop --flip-target"
                )
            x1 = flip_horizontal(x1.unsqueeze(0))[0]
        if args.start == args.end and not args.flip_target:
            raise InputError(f"--from and --to are the same point {args.start!r}: pick two points")
        config = PathConfig(
            method=args.method,
            step=args.step,
            threshold=args.threshold,
            max_steps=args.max_steps,
            dtype=DTYPES[args.dtype],
            box=(0.0, 1.0) if data.is_image else None,  # pixels stay in [0, 1]; vectors free
        ).check()
        state = PathState(x0.unsqueeze(0), x1.unsqueeze(0), config)
        state.start_label, state.end_label = [y0], [y1]
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        while not state.done:
            continue_paths(model, state, max_iterations=100)
            state.save(state_file)
    except KeyboardInterrupt:
        state.save(state_file)
        print(f"interrupted: state saved to {state_file}; continue with --resume")
        raise
    result = state.result()
    save_figure(path_strip(result, 0, frames=args.frames), args.out / "path_strip.png")
    gif = save_path_animation(result, args.out / "path.gif")  # None for vectors
    payload = {
        "checkpoint": model_source(args),
        "from": args.start,
        "to": args.end,
        "flip_target": args.flip_target,
        "transforms": list(data.transforms) if data is not None else None,
        **result.to_json(include_points=args.include_points),
        "animation": str(gif) if gif else None,
    }
    if gif is None and result.points[0][0].dim() == 1:
        payload["note"] = "vector data: no animation written (the strip plots the vectors)"
    elif gif is None:
        payload["note"] = "Pillow is not installed: no animation written"
        print("note: Pillow is not installed, so no GIF was written")
    write_json(args.out / "path.json", payload)
    if args.json:
        write_json(args.json, payload)
    entry = payload["paths"][0]
    print(
        f"{entry['stop_reason']} after {entry['steps']} steps: distance "
        f"{entry['start_distance']:.3f} -> {entry['final_distance']:.3f} "
        f"(relative {entry['relative_distance']:.3f}), final class {entry['predicted'][-1]} "
        f"(target label {entry['end_label']}); wrote {args.out}"
    )
    return 0
