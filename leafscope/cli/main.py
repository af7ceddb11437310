"""``leafscope`` entry point: one sub-command per module in :mod:`leafscope.cli`.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` where ``run(args) -> int``. Errors raised on purpose (:class:`LeafscopeError`)
are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from leafscope.errors import LeafscopeError

# Module names under leafscope.cli, in the order they appear in --help.
COMMANDS = [
    "demo",
    "train",
    "spectrum",
    "path",
    "walk",
    "involutivity",
    "transfer",
    "ood",
    "denoise",
    "generate",
    "nnk",
    "early-stopping",
    "stability",
    "invariance",
    "thermo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leafscope",
        description="Measure the geometry a trained classifier imposes on its data.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"leafscope.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name == f"leafscope.cli.{name.replace('-', '_')}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LeafscopeError as exc:
        print(f"leafscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"leafscope {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
