"""Helpers of the per-point commands (``spectrum``, ``denoise``, ``involutivity``,
``generate``): the flags of results at scale and running a sharded job from them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from leafscope.cli.common import add_executor_arguments, check_executor_args, executor_from_args

__all__ = ["add_scale_arguments", "check_scale_args", "job_rows", "run_job"]


def add_scale_arguments(parser: argparse.ArgumentParser, *, out: bool = True) -> None:
    """Add ``--out DIR`` (unless the command has its own), ``--shard-size``, ``--resume``,
    ``--shard I/N``, ``--no-progress`` and the executor flags (as ``leafscope spectrum``)."""
    group = parser.add_argument_group("results at scale (Parquet shards, any executor)")
    if out:
        group.add_argument(
            "--out", type=Path, default=None, help="write Parquet shards + _summary.json here"
        )
    group.add_argument("--shard-size", type=int, default=1000, help="points per shard")
    group.add_argument("--resume", action="store_true", help="skip the finished shards")
    group.add_argument(
        "--shard", default=None, metavar="I/N", help="run only slice I of N (job arrays; merge)"
    )
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_executor_arguments(parser)


def check_scale_args(args: argparse.Namespace) -> tuple[int, int]:
    """Refuse bad executor / slice flags before any work; return the slice ``(I, N)``."""
    from leafscope.execution import parse_slice
    from leafscope.execution.results import plan_shards

    check_executor_args(args)
    plan_shards(1, args.shard_size)  # raises for --shard-size < 1
    if not args.shard:
        return (0, 1)
    i, n = parse_slice(args.shard)
    return i - 1, n  # the old shard runner counts slices from 0


def run_job(
    args: argparse.Namespace,
    job: Any,
    device: torch.device | str,
    out: Path | None,
    runner: Callable[..., Any] | None = None,
) -> Any:
    """Run ``job`` with the executor, slice and resume flags of ``args``; shards under ``out``
    (None: rows in memory). Prints what an incomplete slice did.

    Args:
        runner: ``run_point_job`` (default) or another runner with its signature, e.g.
            ``run_spectrum_job``.

    Returns:
        The runner's result (:class:`leafscope.execution.PointJobResult`).
    """
    from leafscope.execution import run_point_job

    runner = runner or run_point_job
    part = check_scale_args(args)
    with executor_from_args(args, device) as executor:
        done = runner(
            job, executor, out=out, resume=args.resume, part=part, progress=not args.no_progress
        )
    if not done.complete:
        print(
            f"slice {part[0]}/{part[1]}: computed {len(done.computed)} shard(s), skipped "
            f"{len(done.skipped)}; when every slice is done: leafscope merge {out}"
        )
    elif out is not None:
        print(f"wrote {len(job.shards)} shard(s) and _summary.json under {out}")
    return done


def job_rows(done: Any, out: Path | None) -> dict:
    """All rows of a complete job: kept in memory, or read back from ``out``."""
    if done.columns is not None:
        return done.columns
    from leafscope.execution import read_rows

    return read_rows(out)
