"""``leafscope merge DIR``: verify the shards of a result folder and write its summary.

Any task: the folder's ``_settings.json`` names it. Every shard's fingerprint (what produced it)
and checksum (its rows) are verified; a missing, damaged or foreign shard is named in one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge",
        help="verify the shards of a result folder and write its summary",
        description="Checks that every shard of the job recorded in DIR/_settings.json exists, "
        "was produced by that job (fingerprint) and is intact (checksum), then writes "
        "DIR/_summary.json from all rows (the file an unsliced run writes) and the task's files "
        "under DIR/_files.",
    )
    p.add_argument("folder", type=Path, metavar="DIR", help="the --out folder of the job")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the summary here")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leafscope.execution import ResultFolder
    from leafscope.execution.runner import job_from_settings, merge
    from leafscope.io import write_json
    from leafscope.report.results import write_result_figures
    from leafscope.tasks import get_task

    payload = merge(args.folder)
    write_result_figures(args.folder)
    job, _ = job_from_settings(ResultFolder(args.folder).read_settings()["settings"])
    for line in get_task(job.task)(job.params).terminal_lines(payload["summary"]):
        print(line)
    print(
        f"merged {payload['num_shards']} verified shard(s), {payload['num_units']} units: "
        f"wrote {args.folder / '_summary.json'}"
    )
    if args.json is not None:
        write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0
