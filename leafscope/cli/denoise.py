"""``leafscope denoise``: leaf projection against standard denoisers on noisy test images."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    finish_json,
    load_data_for,
    load_data_like,
    model_from_args,
    model_source,
    resolve_device,
)
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``denoise`` sub-command."""
    p = subparsers.add_parser(
        "denoise",
        help="denoise by projection onto the data leaf; compare with standard denoisers",
        description="Adds Gaussian noise (clipped to [0,1]) to test images and denoises them by a "
        "horizontal path from the nearest clean training image toward the noisy image (its end "
        "is the closest point on the data leaf), by that nearest image alone, Gaussian blur, PCA "
        "projection, total variation, NL-means, wavelet shrinkage and (optional package, when "
        "asked for) BM3D; every method's parameters are tuned per sigma on separate noisy "
        "training images. Reports mean PSNR and SSIM (data range 1) and classifier accuracy.",
    )
    add_model_arguments(p)
    p.add_argument(
        "--sigma", default="0.1,0.25,0.5", help="noise std, or a comma list (default 0.1,0.25,0.5)"
    )
    add_data_arguments(p, "data set")
    p.add_argument("--points", type=int, default=200, help="test images (default 200)")
    p.add_argument("--pool", type=int, default=10000, help="clean training images (default 10000)")
    p.add_argument("--tune-points", type=int, default=100, help="images tuning the baselines")
    p.add_argument("--leaf-steps", type=int, default=50, help="most steps per path (default 50)")
    p.add_argument("--leaf-step", type=float, default=0.1, help="largest step (default 0.1)")
    p.add_argument("--anchors", type=int, default=1, help="paths per image (default 1)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument(
        "--methods",
        default="default",
        help="comma list of methods, 'default' (all but bm3d) or 'all' (bm3d needs "
        "pip install leafscope[bm3d]; about 1 s per 28x28 image)",
    )
    p.add_argument(
        "--bm3d-tune-points",
        type=int,
        default=None,
        help="tune BM3D on only the first N tuning images (default: all --tune-points)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--figure", type=Path, default=None, help="save denoising strips (PNG)")
    add_device_argument(p)
    p.set_defaults(func=run)


def _sigmas(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise InputError(f"--sigma must be numbers separated by commas (got {text!r})") from exc
    if not values or any(not v > 0 for v in values):
        raise InputError(f"--sigma values must be > 0 (got {text!r}), e.g. 0.1,0.25,0.5")
    return values


def _methods(text: str) -> tuple[str, ...] | None:
    from leafscope.applications.denoise import METHODS

    if text == "default":
        return None
    if text == "all":
        return METHODS
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise InputError(
            f"--methods: unknown {bad or text!r}; use default, all or a comma list of "
            f"{','.join(METHODS)}"
        )
    return names


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write JSON/figure; 0 on success."""
    from leafscope.applications.denoise import denoise_benchmark

    sigmas = _sigmas(args.sigma)
    methods = _methods(args.methods)
    if args.points < 1 or args.pool <= args.tune_points:
        raise InputError(
            f"need --points >= 1 and --pool > --tune-points (got {args.points}, {args.pool}, "
            f"{args.tune_points})"
        )
    model = model_from_args(args, resolve_device(args.device))
    train = load_data_for(model, args, "train", limit=args.pool)
    if not train.is_image:
        raise InputError(
            f"denoise compares image denoisers (blur, total variation) but {args.dataset} holds "
            f"vectors of shape {train.input_shape}: use an image data set"
        )
    test = load_data_like(args, "test", args.dataset, train, limit=args.points)
    if (test.labels < 0).any():
        raise InputError(f"{args.dataset} test images are unlabelled: use a labelled data set")
    result = denoise_benchmark(
        model,
        train.images,
        test.images,
        test.labels,
        sigmas=sigmas,
        tune_points=args.tune_points,
        leaf_steps=args.leaf_steps,
        leaf_step=args.leaf_step,
        n_anchors=args.anchors,
        seed=args.seed,
        methods=methods,
        bm3d_tune_points=args.bm3d_tune_points,
        progress=True,
    )
    for name, reason in result.settings["skipped"].items():
        print(f"skipped {name}: {reason}")
    result.settings.update({"checkpoint": model_source(args), "dataset": args.dataset})
    print(result.markdown())
    print()
    print(result.wide_markdown())
    finish_json(args.json, result.to_json())
    if args.figure:
        from leafscope.report.figures.applications import denoising_strips
        from leafscope.report.save import save_figure

        last = f"{sigmas[-1]:g}"
        save_figure(denoising_strips(result.examples[last]), args.figure)
        print(f"wrote {args.figure} (sigma {last})")
    return 0
