"""``leafscope involutivity``: is D_x = span{∇x p_a} involutive? Lie brackets at N points.

The points run as shards of a per-point job (kind ``involutivity``, see
:mod:`leafscope.execution.points`): on any executor, with ``--out DIR`` as Parquet shards (one
row per point), resumable and sliceable (``--shard I/N``, then ``leafscope merge DIR``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from leafscope.cli.common import (
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    check_minimum,
    data_spec_from_args,
    finish_json,
    load_data_for,
    model_from_args,
    model_source,
    model_spec_from_args,
    resolve_device,
)
from leafscope.cli.jobs import add_scale_arguments, check_scale_args, job_rows, run_job
from leafscope.errors import InputError

INPUTS = ("noise", "data")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``involutivity`` sub-command."""
    p = subparsers.add_parser(
        "involutivity",
        help="Frobenius test: rank of span{D_x, [D_x, D_x]} by Lie brackets (float64)",
        description="Per point: dim D_x and dim span{D_x, [D_x, D_x]} (singular values of the "
        "stacked fields and brackets, rank at --rtol), brackets by forward-over-reverse "
        "Hessian-vector products. Optionally the same test for the Fisher distribution in "
        "parameter space (--fisher-points).",
    )
    add_model_arguments(p)
    p.add_argument("--points", type=int, default=20, help="number of points (default: 20)")
    p.add_argument("--inputs", default="noise", help="noise (uniform [0,1), as published) or data")
    p.add_argument("--json", type=Path, default=None, help="output JSON file (or --out DIR)")
    add_data_arguments(p, "data set for --inputs data")
    p.add_argument("--rtol", type=float, default=1e-10, help="relative rank tolerance")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise points")
    p.add_argument("--chunk-size", type=int, default=4, help="points per vectorised chunk")
    p.add_argument(
        "--fisher-points",
        type=int,
        default=0,
        help="also test the Fisher distribution in parameter space at this many points",
    )
    p.add_argument(
        "--fisher-parameters",
        default=None,
        help="comma-separated parameter names for the Fisher test (default: all; large "
        "models need a subset, e.g. fc2.weight,fc2.bias)",
    )
    add_scale_arguments(p)
    add_device_argument(p)
    p.set_defaults(func=run)


def load_inputs(kind: str, n: int, shape, dataset: str, seed: int, data_dir=None) -> torch.Tensor:
    """``n`` points: uniform noise in [0, 1) of ``shape`` (one point's shape, e.g. (C, H, W) or
    (D,)) or the first ``n`` test points of ``dataset``."""
    if kind not in INPUTS:
        raise InputError(f"unknown --inputs {kind!r}: use noise or data")
    if isinstance(n, bool) or n < 1:
        raise InputError(f"--points must be >= 1 (got {n})")
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand((n, *shape), generator=gen)
    from leafscope.data import load_images

    return load_images(dataset, "test", data_dir=data_dir, limit=n).images


def noise_shape(model: torch.nn.Module, args: argparse.Namespace) -> tuple[int, ...]:
    """The shape of one noise point for ``model``: the input shape it records (leafscope
    checkpoints), else that of the data set ``--dataset`` (with ``--grey``/``--resize``), checked
    against the model."""
    from leafscope.data import expected_input_shape

    shape = expected_input_shape(model)
    if shape is None:
        shape = load_data_for(model, args, "test", limit=1).input_shape
    return tuple(shape)


def _points_spec(args: argparse.Namespace, model: torch.nn.Module) -> tuple:
    """The data spec (``--inputs data``) or None, the point shape, and the first point (checked
    against the model)."""
    from leafscope.data import check_model_input
    from leafscope.execution import put_cached_data
    from leafscope.execution.point_kinds import noise_points

    if args.inputs not in INPUTS:
        raise InputError(f"unknown --inputs {args.inputs!r}: use noise or data")
    check_minimum(args, 1, "points")
    if args.inputs == "data":  # with --grey / --resize, checked against the model
        spec = data_spec_from_args(args, "test")
        source = spec.load()
        check_model_input(model, source.first, source=f"the data ({args.dataset}:test)")
        if args.points > len(source):
            raise InputError(f"--points {args.points} exceeds the {len(source)} test points")
        put_cached_data(spec, source)
        first = source.take([0])[0]
        return spec, tuple(first.shape[1:]), first
    shape = noise_shape(model, args)
    first = noise_points(args.seed, shape, (0,))
    check_model_input(model, first, source=f"noise points of shape {shape}")
    return None, shape, first


def point_job(args: argparse.Namespace, device: torch.device) -> tuple:
    """The per-point job of ``args`` and the loaded model (put in the worker cache, so an
    in-process run loads nothing twice)."""
    from leafscope.execution import PointJob, put_cached_model

    model = model_from_args(args, device)
    spec, shape, first = _points_spec(args, model)
    with torch.no_grad():
        num_classes = int(model(first.to(device)).shape[1])
    model_spec = model_spec_from_args(args)
    put_cached_model(model_spec, device, model)
    meta = {"checkpoint": model_source(args), "model": getattr(model, "config", {}) or {}}
    params = {"inputs": args.inputs, "shape": list(shape), "seed": args.seed, "rtol": args.rtol,
              "chunk_size": args.chunk_size, "num_classes": num_classes}  # fmt: skip
    job = PointJob(
        kind="involutivity",
        num_points=args.points,
        params=params,
        model=model_spec,
        data=spec,
        device=str(device),
        shard_size=args.shard_size,
        info={"checkpoint": meta["checkpoint"], "meta": meta},
    )
    return job, model


def run(args: argparse.Namespace) -> int:
    """Compute the involutivity numbers and write OUT; 0 on success."""
    from leafscope.execution.point_kinds import involutivity_result_of

    if args.json is None and args.out is None:
        raise InputError("pass --json FILE (small jobs) or --out DIR (Parquet shards)")
    part = check_scale_args(args)
    if args.fisher_points and part != (0, 1):
        raise InputError("--fisher-points runs in one process: drop it from --shard I/N slices")
    device = resolve_device(args.device)
    job, model = point_job(args, device)
    done = run_job(args, job, device, args.out)
    if not done.complete:
        return 0
    res = involutivity_result_of(job.settings(), job.info, job_rows(done, args.out))
    payload = res.to_json()
    print(
        f"input space, {args.points} {args.inputs} points: mean dim D_x "
        f"{res.mean_dim_distribution:.2f}, mean dim span{{D, [D, D]}} "
        f"{res.mean_dim_with_brackets:.2f} (rtol {args.rtol:g}, ceiling {res.ceiling}), "
        f"{res.seconds:.1f} s"
    )
    print("  mean rank by rtol: " + ", ".join(f"{k}: {v:.2f}" for k, v in res.rank_by_rtol.items()))
    if args.fisher_points:
        payload["fisher"] = _fisher(args, model, job, device)
    finish_json(args.json, payload)
    return 0


def _fisher(args: argparse.Namespace, model: torch.nn.Module, job, device) -> dict:
    """The Fisher-distribution test at the first ``--fisher-points`` points."""
    from leafscope.execution import cached_data
    from leafscope.execution.point_kinds import noise_points
    from leafscope.foliation import fisher_involutivity

    positions = tuple(range(min(args.fisher_points, args.points)))
    if job.data is None:
        x = noise_points(args.seed, tuple(job.params["shape"]), positions)
    else:
        x = cached_data(job.data).take(positions)[0]
    names = args.fisher_parameters.split(",") if args.fisher_parameters else None
    fres = fisher_involutivity(
        model,
        x.to(device),
        rtol=args.rtol,
        inputs=args.inputs,
        parameters=names,
        meta=job.info["meta"],
    )
    print(
        f"parameter space, {len(positions)} points: mean dim "
        f"{fres.mean_dim_distribution:.2f}, with brackets {fres.mean_dim_with_brackets:.2f}"
    )
    return fres.to_json()
