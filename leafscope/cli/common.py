"""Helpers shared by the command modules: device choice, shared arguments, JSON output."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from leafscope.dtypes import DTYPES  # the ``--dtype`` choices; re-exported
from leafscope.errors import InputError
from leafscope.io import write_json

__all__ = [
    "DTYPES",
    "add_data_arguments",
    "add_data_dir_argument",
    "add_device_argument",
    "add_transform_arguments",
    "check_minimum",
    "finish_json",
    "load_data",
    "load_data_for",
    "load_model_spec",
    "parse_layers",
    "resolve_device",
    "write_json",
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
    """Add ``--dataset`` (default mnist), ``--data-dir`` and the conversions ``--grey``,
    ``--resize H,W`` and ``--label-column`` (used by :func:`load_data`)."""
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


def load_data(
    args: argparse.Namespace, split: str, *, limit: int | None = None, name: str | None = None
) -> Any:
    """Load ``name`` (default ``args.dataset``) with the data flags of ``args``.

    The one place the commands load data: ``--data-dir``, ``--grey``, ``--resize`` and
    ``--label-column`` are applied here (commands without these flags get the defaults), and the
    conversions land in the dataset's ``transforms`` (hence in ``describe()`` in the JSON).

    Returns:
        A :class:`leafscope.data.ImageDataset`.
    """
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


def load_data_for(
    model: torch.nn.Module,
    args: argparse.Namespace,
    split: str,
    *,
    limit: int | None = None,
    name: str | None = None,
) -> Any:
    """:func:`load_data`, then check that ``model`` takes the data.

    Raises:
        InputError: the model does not take the data; the message names both shapes and the
            flags (``--grey``, ``--resize H,W``) that fix it.
    """
    from leafscope.data import check_model_input

    data = load_data(args, split, limit=limit, name=name)
    check_model_input(model, data, source=f"the data ({data.name}:{split})")
    return data


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir`` (searched before $LEAFSCOPE_DATA, the cache and ../shared/data)."""
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="folder searched first for data files"
    )


def resolve_device(name: str) -> torch.device:
    """Turn a ``--device`` value into a ``torch.device``; never requires CUDA unless asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown --device {name!r}: use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name} asked for CUDA but none is available: use --device cpu")
    return device


def check_minimum(args: argparse.Namespace, minimum: int, *names: str) -> None:
    """Raise InputError naming the first integer option ``--name`` below ``minimum``."""
    for name in names:
        value = getattr(args, name)
        if value < minimum:
            raise InputError(f"--{name.replace('_', '-')} must be >= {minimum} (got {value})")


def load_model_spec(spec: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Load a model from a ``.pt`` checkpoint or a run folder (its newest checkpoint)."""
    from leafscope.training import load_checkpoint, select_checkpoint

    path = Path(spec)
    if path.is_dir():
        path = select_checkpoint(path)
    elif not path.exists():
        raise InputError(f"{path} is neither a checkpoint file nor a run folder: check the path")
    return load_checkpoint(path, device=device)


def parse_layers(text: str, model: torch.nn.Module) -> list[str]:
    """Comma-separated layer names, checked against ``model`` (the message lists valid names)."""
    from leafscope.models.inspect import module_names

    layers = [t.strip() for t in text.split(",") if t.strip()]
    valid = module_names(model)
    bad = [name for name in layers if name not in valid]
    if bad or not layers:
        raise InputError(
            f"unknown layer(s) {bad or text!r} for this model: valid names are {', '.join(valid)}"
        )
    return layers


def finish_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically to ``path`` (if given) and say so."""
    if path is not None:
        write_json(path, payload)
        print(f"wrote {path}")
