"""``leafscope generate``: new images of a class by random walks on the data leaf.

The walks run as shards of a per-point job (kind ``generate``, one row per start point, see
:mod:`leafscope.execution.points`) on any executor; the rows are Parquet shards under
``OUT/points/`` (resumable, sliceable: ``leafscope merge OUT`` joins the slices and writes the
grid). Each walk draws its directions from its own seed, so its image does not depend on the
shards or the executor.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from leafscope.cli.common import (
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    data_spec_from_args,
    model_from_args,
    model_source,
    model_spec_from_args,
    resolve_device,
    write_json,
)
from leafscope.cli.jobs import add_scale_arguments, check_scale_args, job_rows, run_job
from leafscope.errors import InputError
from leafscope.io import atomic_write


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` sub-command."""
    p = subparsers.add_parser(
        "generate",
        help="generate images of a class by random walks on the data leaf",
        description="Starts from correctly classified training images of --class and walks on "
        "the data leaf (a random direction projected on D_x each step, pixels clamped to [0,1], "
        "steps that change the predicted class undone). Writes OUT/grid.png (top: starts, "
        "bottom: generated, titled with predicted label and probability), OUT/generated.npz, "
        "OUT/generate.json and the per-walk rows as Parquet shards under OUT/points/.",
    )
    add_model_arguments(p)
    p.add_argument("--class", dest="label", type=int, required=True, help="class to generate")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_data_arguments(p, "training images to start from")
    p.add_argument("--n", type=int, default=16, help="images to generate (default 16)")
    p.add_argument("--steps", type=int, default=200, help="step attempts per walk (default 200)")
    p.add_argument("--step", type=float, default=0.1, help="step length (default 0.1)")
    p.add_argument("--pool", type=int, default=5000, help="training images to pick starts from")
    p.add_argument("--seed", type=int, default=0)
    add_scale_arguments(p, out=False)  # the shards go to OUT/points
    add_device_argument(p)
    p.set_defaults(func=run)


POINTS_DIR = "points"


def point_job(args: argparse.Namespace, device) -> tuple:
    """The per-point job of the walks (starts chosen here) and the loaded training data."""
    from leafscope.applications.generate import choose_starts
    from leafscope.data import check_model_input
    from leafscope.execution import PointJob, put_cached_data, put_cached_model

    if args.n < 1 or args.steps < 0:
        raise InputError(f"--n must be >= 1 and --steps >= 0 (got {args.n}, {args.steps})")
    model = model_from_args(args, device)
    spec = data_spec_from_args(args, "train")
    source = spec.load()
    data = source.first
    check_model_input(model, data, source=f"the data ({args.dataset}:train)")
    if not 0 <= args.label < max(data.num_classes, 1):
        raise InputError(
            f"--class {args.label} is not a class of {args.dataset}: use 0..{data.num_classes - 1}"
        )
    images, labels = source.take(range(min(args.pool, len(source))))
    starts = choose_starts(model, images, labels, args.label, n=args.n, seed=args.seed)
    model_spec = model_spec_from_args(args)
    put_cached_model(model_spec, device, model)
    put_cached_data(spec, source)
    params = {"label": args.label, "steps": args.steps, "step": args.step, "seed": args.seed,
              "box": [0.0, 1.0] if data.is_image else None,  # pixels stay pixels
              "shape": list(data.input_shape), "starts": [int(i) for i in starts]}  # fmt: skip
    job = PointJob(
        kind="generate",
        num_points=args.n,
        params=params,
        model=model_spec,
        data=spec,
        device=str(device),
        shard_size=args.shard_size,
        info={"checkpoint": model_source(args), "is_image": data.is_image},
    )
    return job


def run(args: argparse.Namespace) -> int:
    """Generate, write the grid, the arrays and JSON; 0 on success."""
    part = check_scale_args(args)
    device = resolve_device(args.device)
    job = point_job(args, device)
    points = args.out / POINTS_DIR
    if not args.resume and part == (0, 1):
        _clear_rows(points)  # a fresh whole run replaces OUT, as before the shards
    done = run_job(args, job, device, points)
    if done.complete:
        write_outputs(args.out, job.settings(), job.info, job_rows(done, points))
    return 0


def _clear_rows(points: Path) -> None:
    """Delete the shards, settings and summary of an earlier job in ``points`` (only those)."""
    from leafscope.execution import SETTINGS_FILE, SUMMARY_FILE, ResultFolder

    folder = ResultFolder(points)
    for shard in folder.finished():
        folder.shard_path(shard).unlink()
    for name in (SETTINGS_FILE, SUMMARY_FILE):
        (points / name).unlink(missing_ok=True)


def write_outputs(out: Path, settings: dict, info: dict, columns: dict) -> None:
    """``OUT/grid.png`` (starts, then walks), ``OUT/generated.npz`` and ``OUT/generate.json``
    from the rows of every walk (also called by ``leafscope merge``)."""
    import torch

    from leafscope.execution.point_kinds import generate_summary
    from leafscope.report.figures.applications import image_grid
    from leafscope.report.save import save_figure

    p = settings["params"]
    shape, n = tuple(p["shape"]), int(settings["num_points"])
    start = torch.from_numpy(np.asarray(columns["start"], dtype=np.float32).reshape(n, *shape))
    end = torch.from_numpy(np.asarray(columns["image"], dtype=np.float32).reshape(n, *shape))
    labels = [int(v) for v in columns["start_predicted"]] + [int(v) for v in columns["predicted"]]
    probs = [float(v) for v in columns["start_probability"]]
    probs += [float(np.float32(v)) for v in columns["probability"]]
    out.mkdir(parents=True, exist_ok=True)
    fig = image_grid(
        torch.cat([start, end]),
        labels,
        probs,
        ncols=min(n, 8) if n > 8 else n,
        title=f"class {p['label']}: starts (first rows) and leaf walks, {p['steps']} steps",
    )
    save_figure(fig, out / "grid.png")
    arrays = {
        "images": end.numpy(),
        "starts": start.numpy(),
        "predicted": np.asarray(columns["predicted"]),
        "probability": np.asarray(columns["probability"], dtype=np.float32),
    }
    atomic_write(out / "generated.npz", lambda f: np.savez_compressed(f, **arrays))
    summary = generate_summary(settings, info, columns)
    write_json(out / "generate.json", summary)
    kind = "images" if info.get("is_image", True) else "vectors"
    print(
        f"{n} {kind} of class {p['label']}: kept class {100 * summary['kept_class']:.0f}%, "
        f"mean displacement {summary['mean_displacement']:.2f}; wrote {out}/grid.png"
    )
