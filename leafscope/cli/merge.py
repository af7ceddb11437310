"""``leafscope merge DIR``: join the slices of a sharded job (``--shard I/N``) into its summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import finish_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge",
        help="check a result folder of Parquet shards is complete and write its summary",
        description="Checks that every shard of the job recorded in DIR/_settings.json exists and "
        "holds the recorded points, then writes DIR/_summary.json from all rows (the same file "
        "an unsliced run writes).",
    )
    p.add_argument("folder", type=Path, metavar="DIR", help="the --out folder of the job")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leafscope.execution import merge_spectrum

    payload = merge_spectrum(args.folder)
    summary = payload["summary"]
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))
    print(f"merged {payload['num_shards']} shard(s), {payload['num_points']} points: "
          f"wrote {args.folder / '_summary.json'}")  # fmt: skip
    finish_json(args.json, payload)
    return 0
