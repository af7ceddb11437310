"""``leafscope merge DIR``: join the slices of a sharded job (``--shard I/N``) into its summary.

Any task (read from ``DIR/_settings.json``: its shards are verified, then its summary and files
are written), or a folder of the older shard runner (``spectrum`` or a registered per-point kind).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import finish_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge",
        help="check a result folder of Parquet shards is complete and write its summary",
        description="Checks that every shard of the job recorded in DIR/_settings.json (any "
        "task: spectrum, denoise, involutivity, generate, ...) exists and holds the recorded "
        "units, then writes DIR/_summary.json (and the task's files under DIR/_files) from all "
        "rows: the same files an unsliced run writes.",
    )
    p.add_argument("folder", type=Path, metavar="DIR", help="the --out folder of the job")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leafscope.execution import ResultFolder, merge_results
    from leafscope.execution.runner import merge

    recorded = ResultFolder(args.folder).read_settings()
    if recorded is not None and "task" in recorded.get("settings", {}):
        from leafscope.tasks import get_task

        payload = merge(args.folder)
        for line in get_task(payload["task"])(None).terminal_lines(payload["summary"]):
            print(line)
        print(
            f"merged {payload['num_shards']} verified shard(s), {payload['num_units']} units: "
            f"wrote {args.folder / '_summary.json'}"
        )
        finish_json(args.json, payload)
        return 0
    folder = args.folder
    payload = merge_results(folder)
    summary = payload["summary"]
    scalars = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None}
    print(" ".join(f"{k}={v:.3f}" for k, v in scalars.items() if not isinstance(v, bool)))
    print(f"merged {payload['num_shards']} shard(s), {payload['num_points']} points: "
          f"wrote {folder / '_summary.json'}")  # fmt: skip
    finish_json(args.json, payload)
    return 0
