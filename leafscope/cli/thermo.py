"""``leafscope thermo lenet|gnn|filters``: the former spelling of the ``thermo-lenet``,
``thermo-gnn`` and ``thermo-filters`` commands, kept as an alias (same flags, same results).

The commands themselves are generated from the tasks (:mod:`leafscope.tasks.thermo`); this
module only files them under ``thermo``.
"""

from __future__ import annotations

import argparse
from typing import Any

from leafscope.errors import InputError

EXPERIMENTS = ("lenet", "gnn", "filters")


class _Renamed:
    """A sub-parser collection that files the next parser under another name."""

    def __init__(self, subparsers: Any, name: str):
        self._subparsers, self._name = subparsers, name

    def add_parser(self, _name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self._subparsers.add_parser(self._name, **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``thermo`` with ``lenet``, ``gnn`` and ``filters`` (the ``thermo-*`` commands)."""
    from leafscope.cli.tasks import add_task_command
    from leafscope.tasks import get_task

    parser = subparsers.add_parser(
        "thermo",
        help="alias: thermo lenet|gnn|filters = thermo-lenet|thermo-gnn|thermo-filters",
        description="The thermo-lenet, thermo-gnn and thermo-filters commands under their "
        "former names: leafscope thermo lenet ... is leafscope thermo-lenet ...",
    )
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for name in EXPERIMENTS:
        add_task_command(_Renamed(sub, name), get_task(f"thermo-{name}"))
    parser.set_defaults(func=_missing)


def _missing(args: argparse.Namespace) -> int:
    raise InputError(
        "thermo needs an experiment: use 'leafscope thermo-lenet', 'thermo-gnn' or "
        "'thermo-filters' (or 'thermo lenet|gnn|filters')"
    )
