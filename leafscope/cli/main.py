"""``leafscope`` entry point: one sub-command per module in :mod:`leafscope.cli`.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` where ``run(args) -> int``. Errors raised on purpose (:class:`LeafscopeError`)
and operating-system errors on a path (an unwritable ``--json`` / ``--out``, a full disk) are
printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import re
import sys
from pathlib import Path
from typing import Any

from leafscope.errors import LeafscopeError

# Module names under leafscope.cli, in the order they appear in --help.
COMMANDS = [
    "demo",
    "train",
    "spectrum",
    "merge",
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
    from leafscope.cli.tasks import OneLineParser, add_task_command
    from leafscope.tasks import TASKS, task_names

    parser = OneLineParser(
        prog="leafscope",
        description="Measure the geometry a trained classifier imposes on its data.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    tasks = set(task_names())
    names = COMMANDS + [t for t in sorted(tasks) if t not in COMMANDS]
    for name in names:
        if name in tasks:
            add_task_command(subparsers, TASKS[name])
            continue
        try:
            module = importlib.import_module(f"leafscope.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name == f"leafscope.cli.{name.replace('-', '_')}":
                continue
            raise
        module.register(subparsers)
    return parser


_FIXES = {
    errno.ENOENT: "a folder on the way does not exist or cannot hold files: pass a path in an "
    "existing folder you can write to",
    errno.EACCES: "no permission: pass a path in a folder you can write to (or fix its "
    "permissions)",
    errno.EPERM: "not permitted: pass a path in a folder you can write to",
    errno.EROFS: "the file system is read-only: pass a path on a writable disk",
    errno.EEXIST: "a part of the path is a file, not a folder: pass another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: pass another path",
    errno.EISDIR: "the path is a folder: pass a file name inside it, e.g. DIR/result.json",
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
}


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: the path the user gave, the reason, the fix.

    The temporary file of an atomic write (``.NAME.XXXXXXXX.tmp`` beside the target, see
    :mod:`leafscope.io`) is reported as its target ``NAME``.
    """
    path = exc.filename2 if exc.filename2 is not None else exc.filename
    if path is not None:
        p = Path(str(path))
        if p.name.startswith(".") and p.name.endswith(".tmp") and p.name.count(".") >= 3:
            p = p.with_name(p.name[1:-4].rsplit(".", 1)[0])
        path = str(p)
    reason = exc.strerror or str(exc) or type(exc).__name__
    fix = _FIXES.get(exc.errno, "check the path and the disk")
    return f"{path}: {reason}: {fix}" if path is not None else f"{reason}: {fix}"


#: Library parameter names whose flag is not ``--name-with-dashes``.
FLAG_ALIASES = {
    "factory": "--model",
    "factory_kwargs": "--model-args",
    "part": "--shard",
    "data_seed": "--data-seed",
}
_PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)(?:[= ]([^`]*))?`")


def as_flags(message: str, parser: argparse.ArgumentParser | None) -> str:
    """A library message with its parameters (written `name` or `name=value`) shown as the
    command's flags (``--name value``) where the command has that flag, else as ``name value``.

    The library names parameters, never flags; the command line speaks in flags.
    """
    options = set(parser._option_string_actions) if parser is not None else set()
    by_dest: dict[str, argparse.Action] = {}
    for action in parser._actions if parser is not None else []:
        if action.option_strings:
            by_dest.setdefault(action.dest, action)

    def replace(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        action = by_dest.get(name)
        if action is not None:  # the command's own flag for this parameter
            flag = action.option_strings[-1]
            if action.nargs == 0:  # a switch: no value to show
                return flag
        else:
            flag = FLAG_ALIASES.get(name, "--" + name.replace("_", "-"))
        shown = flag if flag in options else name
        if value is None:
            return shown
        return f"{shown} {value}" if shown == flag else f"{shown}={value}"

    return _PARAMETER.sub(replace, message)


def _command_parser(parser: argparse.ArgumentParser, command: str | None) -> Any:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LeafscopeError as exc:
        message = as_flags(str(exc), _command_parser(parser, args.command))
        print(f"leafscope {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"leafscope {args.command}: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"leafscope {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
