"""``leafscope spectrum``: per-point spectra of G on a data set, and the summary medians.

Small jobs write one JSON (``--json``); large ones write Parquet shards and a summary under
``--out DIR`` (resumable, sliceable into job arrays, on any executor: see
:mod:`leafscope.execution`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    DTYPES,
    add_data_arguments,
    add_device_argument,
    add_model_arguments,
    data_spec_from_args,
    finish_json,
    load_data_for,
    model_from_args,
    model_source,
    model_spec_from_args,
    resolve_device,
)
from leafscope.cli.jobs import add_scale_arguments, check_scale_args, run_job
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "spectrum",
        help="eigenvalues, trace and rank of G at the points of a data set",
        description="Spectrum of the data information matrix G at the first N points of a split "
        "(or at --indices). JSON: per point the C-1 nonzero log10 eigenvalues (descending), "
        "log10 trace, rank, predicted class and max probability; summary medians. With --out "
        "DIR: the same per point as Parquet shards plus DIR/_summary.json (resumable).",
    )
    add_model_arguments(p)
    add_data_arguments(p, "data set name or .npz/folder path")
    p.add_argument(
        "--split", default="test", choices=["train", "test", "all"], help="all: train then test"
    )
    p.add_argument(
        "--points", type=_points, default=256, help="first N points, or 'all' (default 256)"
    )
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
    add_scale_arguments(p)
    add_device_argument(p)
    p.set_defaults(func=run)


def _points(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all' (got {text!r})") from exc


def _indices(text: str, n: int) -> list[int]:
    try:
        idx = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise InputError(f"--indices must be comma-separated integers (got {text!r})") from exc
    bad = [i for i in idx if not 0 <= i < n]
    if not idx or bad:
        raise InputError(f"--indices {bad or text!r} out of range: the split has points 0..{n - 1}")
    return idx


def _selection(args: argparse.Namespace, n: int) -> list[int]:
    if args.indices:
        return _indices(args.indices, n)
    if args.points is None:
        return list(range(n))
    if args.points > n:
        raise InputError(f"--points {args.points} exceeds the {n} points of the split")
    return list(range(args.points))


def run(args: argparse.Namespace) -> int:
    from leafscope.data import check_model_input
    from leafscope.execution import (
        SpectrumJob,
        put_cached_data,
        put_cached_model,
        rows_to_points,
        run_spectrum_job,
    )

    if args.points is not None and args.points < 1:
        raise InputError(f"--points must be >= 1 (got {args.points})")
    check_scale_args(args)
    device = resolve_device(args.device)
    if args.top_k is not None:
        model = model_from_args(args, device)
        data = load_data_for(model, args, args.split)
        return _run_top_k(args, model, data, _selection(args, len(data)), device)
    model_spec, data_spec = model_spec_from_args(args), data_spec_from_args(args, args.split)
    model = model_from_args(args, device)
    source = data_spec.load()
    check_model_input(model, source.first, source=f"the data ({data_spec.name}:{args.split})")
    put_cached_model(model_spec, device, model)  # in process: no second load
    put_cached_data(data_spec, source)
    info = {
        "checkpoint": model_source(args),
        "dataset": source.describe(),
        "split": args.split,
        "normalization": source.first.normalization,
    }
    job = SpectrumJob(
        model=model_spec,
        data=data_spec,
        indices=_selection(args, len(source)),
        dtype=args.dtype,
        batch_size=args.batch_size,
        rtol=args.rtol,
        device=str(device),
        shard_size=args.shard_size,
        info=info,
    )
    done = run_job(args, job, device, args.out, runner=run_spectrum_job)
    if not done.complete:
        return 0
    summary = done.summary["summary"]
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))
    if args.json is not None:
        columns = done.columns
        if columns is None:
            from leafscope.execution import ResultFolder

            columns = ResultFolder(args.out).read_columns(len(job.shards))
        result = {
            "checkpoint": info["checkpoint"],
            "dataset": info["dataset"],
            "split": args.split,
            "dtype": args.dtype,
            "normalization": info["normalization"],
            "points": rows_to_points(columns),
            "summary": summary,
        }
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
        "checkpoint": model_source(args),
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
