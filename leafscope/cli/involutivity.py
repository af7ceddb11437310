"""``leafscope involutivity``: is D_x = span{∇x p_a} involutive? Lie brackets at N points."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from leafscope.cli.common import (
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    check_minimum,
    finish_json,
    load_data_for,
    model_from_args,
    model_source,
    resolve_device,
)
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
    p.add_argument("--json", required=True, type=Path, help="output JSON file")
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


def run(args: argparse.Namespace) -> int:
    """Compute the involutivity numbers and write OUT; 0 on success."""
    from leafscope.data import check_model_input
    from leafscope.foliation import fisher_involutivity, involutivity

    device = resolve_device(args.device)
    model = model_from_args(args, device)
    config = getattr(model, "config", {}) or {}
    if args.inputs == "data":  # with --grey / --resize, checked against the model
        check_minimum(args, 1, "points")
        x = load_data_for(model, args, "test", limit=args.points).images
    else:
        shape = noise_shape(model, args) if args.inputs == "noise" else ()
        x = load_inputs(args.inputs, args.points, shape, args.dataset, args.seed, args.data_dir)
        check_model_input(model, x, source=f"noise points of shape {shape}")
    meta = {"checkpoint": model_source(args), "model": config}
    res = involutivity(
        model,
        x.to(device),
        rtol=args.rtol,
        inputs=args.inputs,
        chunk_size=args.chunk_size,
        meta=meta,
    )
    payload = res.to_json()
    print(
        f"input space, {args.points} {args.inputs} points: mean dim D_x "
        f"{res.mean_dim_distribution:.2f}, mean dim span{{D, [D, D]}} "
        f"{res.mean_dim_with_brackets:.2f} (rtol {args.rtol:g}, ceiling {res.ceiling}), "
        f"{res.seconds:.1f} s"
    )
    print("  mean rank by rtol: " + ", ".join(f"{k}: {v:.2f}" for k, v in res.rank_by_rtol.items()))
    if args.fisher_points:
        names = args.fisher_parameters.split(",") if args.fisher_parameters else None
        fres = fisher_involutivity(
            model,
            x[: args.fisher_points].to(device),
            rtol=args.rtol,
            inputs=args.inputs,
            parameters=names,
            meta=meta,
        )
        payload["fisher"] = fres.to_json()
        print(
            f"parameter space, {args.fisher_points} points: mean dim "
            f"{fres.mean_dim_distribution:.2f}, with brackets {fres.mean_dim_with_brackets:.2f}"
        )
    finish_json(args.json, payload)
    return 0
