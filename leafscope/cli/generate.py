"""``leafscope generate``: new images of a class by random walks on the data leaf."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

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
from leafscope.io import atomic_write


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` sub-command."""
    p = subparsers.add_parser(
        "generate",
        help="generate images of a class by random walks on the data leaf",
        description="Starts from correctly classified training images of --class and walks on "
        "the data leaf (a random direction projected on D_x each step, pixels clamped to [0,1], "
        "steps that change the predicted class undone). Writes OUT/grid.png (top: starts, "
        "bottom: generated, titled with predicted label and probability), OUT/generated.npz "
        "and OUT/generate.json.",
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
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate, write the grid, the arrays and JSON; 0 on success."""
    import torch

    from leafscope.applications.generate import generate_class
    from leafscope.models.inspect import model_device
    from leafscope.report.figures.applications import image_grid
    from leafscope.report.save import save_figure

    if args.n < 1 or args.steps < 0:
        raise InputError(f"--n must be >= 1 and --steps >= 0 (got {args.n}, {args.steps})")
    model = model_from_args(args, resolve_device(args.device))
    data = load_data_for(model, args, "train", limit=args.pool)
    if not 0 <= args.label < max(data.num_classes, 1):
        raise InputError(
            f"--class {args.label} is not a class of {args.dataset}: use 0..{data.num_classes - 1}"
        )
    walk = generate_class(
        model,
        data.images,
        data.labels,
        args.label,
        n=args.n,
        steps=args.steps,
        step=args.step,
        seed=args.seed,
        box=(0.0, 1.0) if data.is_image else None,  # pixels stay pixels; vectors are free
    )
    with torch.no_grad():
        start_probs = torch.softmax(model(walk.start.to(model_device(model))), 1)
    sp, sl = start_probs.max(1)
    args.out.mkdir(parents=True, exist_ok=True)
    images = torch.cat([walk.start, walk.images])
    labels = sl.cpu().tolist() + walk.predicted.tolist()
    probs = sp.cpu().tolist() + walk.probability.tolist()
    fig = image_grid(
        images,
        labels,
        probs,
        ncols=min(args.n, 8) if args.n > 8 else args.n,
        title=f"class {args.label}: starts (first rows) and leaf walks, {args.steps} steps",
    )
    save_figure(fig, args.out / "grid.png")
    arrays = {
        "images": walk.images.numpy(),
        "starts": walk.start.numpy(),
        "predicted": walk.predicted.numpy(),
        "probability": walk.probability.numpy(),
    }
    atomic_write(args.out / "generated.npz", lambda f: np.savez_compressed(f, **arrays))
    summary = {
        "class": args.label,
        "steps": args.steps,
        "step": args.step,
        "seed": args.seed,
        "checkpoint": model_source(args),
        "kept_class": float((walk.predicted == args.label).float().mean()),
        "mean_displacement": float(walk.displacement.mean()),
        **walk.to_json(),
    }
    write_json(args.out / "generate.json", summary)
    print(
        f"{args.n} {'images' if data.is_image else 'vectors'} of class {args.label}: kept class "
        f"{100 * summary['kept_class']:.0f}%, "
        f"mean displacement {summary['mean_displacement']:.2f}; wrote {args.out}/grid.png"
    )
    return 0
