"""Flags of the two hand-written commands (``train``, ``demo``); every task command gets its
flags from :mod:`leafscope.cli.tasks`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from leafscope.execution.runner import resolve_device

__all__ = [
    "add_data_arguments",
    "add_data_dir_argument",
    "add_device_argument",
    "add_transform_arguments",
    "load_data",
    "resolve_device",
]


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (``auto`` = CUDA when present, else CPU)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (CUDA when available, else cpu), cpu, cuda or cuda:N",
    )


def add_data_arguments(
    parser: argparse.ArgumentParser, dataset_help: str = "data set name or .npz/folder path"
) -> None:
    """Add ``--dataset`` (default mnist), ``--data-dir``, ``--grey``, ``--resize H,W`` and
    ``--label-column`` (read by :func:`load_data`), as the task commands name them."""
    parser.add_argument("--dataset", default="mnist", help=f"{dataset_help} (default: mnist)")
    add_data_dir_argument(parser)
    add_transform_arguments(parser)
    parser.add_argument(
        "--label-column",
        default="label",
        help="label column of a .csv data set ('none': unlabelled; default: label)",
    )


def add_transform_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--grey`` and ``--resize H,W`` (applied by :func:`load_data`, recorded in the JSON)."""
    parser.add_argument(
        "--grey",
        action="store_true",
        help="convert images to one channel (ITU-R 601 luma); default: keep their channels",
    )
    parser.add_argument(
        "--resize",
        default=None,
        metavar="H,W",
        help="resize images bilinearly to H x W (antialiased when shrinking); default: keep",
    )


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir`` (searched before $LEAFSCOPE_DATA, the cache and ../shared/data)."""
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="folder searched first for data files"
    )


def load_data(
    args: argparse.Namespace, split: str, *, limit: int | None = None, name: str | None = None
) -> Any:
    """The data set ``name`` (default ``args.dataset``) with the data flags of ``args``, as a
    :class:`leafscope.data.ImageDataset` (training takes whole tensors)."""
    from leafscope.data import load_images

    return load_images(
        name if name is not None else args.dataset,
        split,
        data_dir=getattr(args, "data_dir", None),
        limit=limit,
        grey=getattr(args, "grey", False),
        resize=getattr(args, "resize", None),
        label_column=getattr(args, "label_column", "label"),
    )
