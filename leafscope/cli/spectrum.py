"""``leafscope spectrum``: per-point spectra of G on a data set, and the summary medians."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    DTYPES,
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    finish_json,
    load_data_for,
    model_from_args,
    model_source,
    resolve_device,
)
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "spectrum",
        help="eigenvalues, trace and rank of G at the points of a data set",
        description="Spectrum of the data information matrix G at the first N points of a split "
        "(or at --indices). JSON: per point the C-1 nonzero log10 eigenvalues (descending), "
        "log10 trace, rank, predicted class and max probability; summary medians.",
    )
    add_model_arguments(p)
    add_data_arguments(p, "data set name or .npz/folder path")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--points", type=int, default=256, help="first N points (default 256)")
    p.add_argument("--indices", default=None, help="comma-separated indices instead of --points")
    p.add_argument("--dtype", default="float64", choices=sorted(DTYPES))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rtol", type=float, default=None, help="rank tolerance (default: NumPy's)")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="only the K largest eigenvalues, matrix-free (jvp/vjp), with error bounds",
    )
    add_device_argument(p)
    p.set_defaults(func=run)


def _indices(text: str, n: int) -> list[int]:
    try:
        idx = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise InputError(f"--indices must be comma-separated integers (got {text!r})") from exc
    bad = [i for i in idx if not 0 <= i < n]
    if not idx or bad:
        raise InputError(f"--indices {bad or text!r} out of range: the split has points 0..{n - 1}")
    return idx


def run(args: argparse.Namespace) -> int:
    from leafscope.information import point_spectra

    if args.points < 1:
        raise InputError(f"--points must be >= 1 (got {args.points})")
    device = resolve_device(args.device)
    model = model_from_args(args, device)
    data = load_data_for(model, args, args.split)
    if args.indices:
        idx = _indices(args.indices, len(data))
    else:
        if args.points > len(data):
            raise InputError(f"--points {args.points} exceeds the {len(data)} points of the split")
        idx = list(range(args.points))
    if args.top_k is not None:
        return _run_top_k(args, model, data, idx, device)
    spectra = point_spectra(
        model,
        data.images[idx],
        batch_size=args.batch_size,
        dtype=DTYPES[args.dtype],
        device=device,
        rtol=args.rtol,
        progress=True,
    )
    points = spectra.to_points()
    for i, record in zip(idx, points, strict=True):
        record["index"] = i
        record["label"] = int(data.labels[i])
    summary = spectra.summary().to_json()
    result = {
        "checkpoint": model_source(args),
        "dataset": data.describe(),
        "split": args.split,
        "dtype": args.dtype,
        "normalization": data.normalization,
        "points": points,
        "summary": summary,
    }
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))
    finish_json(args.json, result)
    return 0


def _run_top_k(args: argparse.Namespace, model, data, idx: list[int], device) -> int:
    from leafscope.information import top_eigenvalues

    spec = top_eigenvalues(
        model.to(device),
        data.images[idx].to(device),
        args.top_k,
        dtype=DTYPES[args.dtype],
        chunk_size=args.batch_size,
    )
    points = spec.to_points()
    for i, record in zip(idx, points, strict=True):
        record["index"] = i
        record["label"] = int(data.labels[i])
    summary = spec.summary()
    result = {
        "checkpoint": str(args.checkpoint),
        "dataset": data.describe(),
        "split": args.split,
        "dtype": args.dtype,
        "normalization": data.normalization,
        "top_k": args.top_k,
        "points": points,
        "summary": summary,
    }
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items() if v is not None))
    finish_json(args.json, result)
    return 0
