"""``leafscope denoise``: leaf projection against standard denoisers on noisy test images.

Tuning (on training images) runs here; the test images then run as shards of a per-point job
(kind ``denoise``, see :mod:`leafscope.execution.points`): on any executor, with ``--out DIR``
as Parquet shards (one row per image, σ and method), resumable and sliceable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    data_spec_from_args,
    finish_json,
    model_from_args,
    model_source,
    model_spec_from_args,
    resolve_device,
)
from leafscope.cli.jobs import add_scale_arguments, check_scale_args, job_rows, run_job
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
    add_scale_arguments(p)
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


def _load(args: argparse.Namespace, model) -> tuple:
    """The training and test data specs, the first ``--pool`` training images and the first
    ``--points`` test images and labels (the sources are put in the worker cache)."""
    from leafscope.data import check_model_input
    from leafscope.execution import put_cached_data

    specs = data_spec_from_args(args, "train"), data_spec_from_args(args, "test")
    sources = [spec.load() for spec in specs]
    train, test = sources[0].first, sources[1].first
    check_model_input(model, train, source=f"the data ({args.dataset}:train)")
    if not train.is_image:
        raise InputError(
            f"denoise compares image denoisers (blur, total variation) but {args.dataset} holds "
            f"vectors of shape {train.input_shape}: use an image data set"
        )
    if test.input_shape != train.input_shape:
        raise InputError(
            f"{args.dataset} test points have shape {test.input_shape} but its training points "
            f"{train.input_shape}: use a data set of one shape"
        )
    for spec, source in zip(specs, sources, strict=True):
        put_cached_data(spec, source)
    pool = sources[0].take(range(min(args.pool, len(sources[0]))))[0]
    images, labels = sources[1].take(range(min(args.points, len(sources[1]))))
    if (labels < 0).any():
        raise InputError(f"{args.dataset} test images are unlabelled: use a labelled data set")
    return specs, pool, images


def point_job(args: argparse.Namespace, device) -> tuple:
    """Tune every method (here) and return the per-point job of the test images, the loaded
    model, the plan and the first ``--pool`` training images."""
    from leafscope.applications.denoise import plan_denoising
    from leafscope.execution import PointJob, put_cached_model

    sigmas = _sigmas(args.sigma)
    methods = _methods(args.methods)
    if args.points < 1 or args.pool <= args.tune_points:
        raise InputError(
            f"need --points >= 1 and --pool > --tune-points (got {args.points}, {args.pool}, "
            f"{args.tune_points})"
        )
    model = model_from_args(args, device)
    (train_spec, test_spec), train_images, test_images = _load(args, model)
    plan = plan_denoising(
        model, train_images, sigmas=sigmas, tune_points=args.tune_points,
        leaf_steps=args.leaf_steps, leaf_step=args.leaf_step, n_anchors=args.anchors,
        seed=args.seed, methods=methods, bm3d_tune_points=args.bm3d_tune_points,
        image_shape=tuple(test_images.shape),
    )  # fmt: skip
    model_spec = model_spec_from_args(args)
    put_cached_model(model_spec, device, model)
    record = plan.to_json()
    scores = record.pop("tune_scores")  # descriptive: not compared on --resume
    extra = {"checkpoint": model_source(args), "dataset": args.dataset, "tune_scores": scores}
    job = PointJob(
        kind="denoise",
        num_points=len(test_images),
        params={"plan": {**record, "tune_scores": {}}},
        model=model_spec,
        data=test_spec,
        extra={"train": train_spec},
        device=str(device),
        shard_size=args.shard_size,
        info={"checkpoint": extra["checkpoint"], "result_settings": extra},
    )
    return job, model, plan, train_images


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write JSON/figure; 0 on success."""
    from leafscope.execution.point_kinds import denoise_result

    check_scale_args(args)
    device = resolve_device(args.device)
    job, model, plan, train_images = point_job(args, device)
    for name, reason in plan.skipped.items():
        print(f"skipped {name}: {reason}")
    done = run_job(args, job, device, args.out)
    if not done.complete:
        return 0
    result = denoise_result(job.settings(), job.info, job_rows(done, args.out))
    print(result.markdown())
    print()
    print(result.wide_markdown())
    finish_json(args.json, result.to_json())
    if args.figure:
        _figure(args, job, model, plan, train_images)
    return 0


def _figure(args: argparse.Namespace, job, model, plan, train_images, n: int = 8) -> None:
    """Denoising strips of the first ``n`` test images at the last σ."""
    from leafscope.applications.denoise import add_noise, denoise_images, noise_seed, split_train
    from leafscope.execution import cached_data
    from leafscope.report.figures.applications import denoising_strips
    from leafscope.report.save import save_figure

    j = len(plan.sigmas) - 1
    clean = cached_data(job.data).take(range(job.num_points))[0].float()
    noisy = add_noise(clean, plan.sigmas[j], noise_seed(plan.seed, j))[:n]
    pool, _ = split_train(train_images, plan.tune_points)
    outputs, _ = denoise_images(model, plan, j, noisy, pool)
    examples = {"clean": clean[:n], **{m: images for m, (images, _) in outputs.items()}}
    save_figure(denoising_strips(examples), args.figure)
    print(f"wrote {args.figure} (sigma {plan.sigmas[j]:g})")
