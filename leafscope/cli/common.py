"""Helpers shared by the command modules: device choice, shared arguments, JSON output."""

from __future__ import annotations

import argparse
import json
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
    "add_executor_arguments",
    "add_model_arguments",
    "add_transform_arguments",
    "check_executor_args",
    "check_minimum",
    "data_spec_from_args",
    "executor_from_args",
    "finish_json",
    "load_data",
    "load_data_for",
    "load_data_like",
    "load_model_spec",
    "model_from_args",
    "model_spec_from_args",
    "model_source",
    "parse_layers",
    "parse_model_args",
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


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--executor`` (inprocess | dask), ``--workers N`` and ``--scheduler ADDRESS`` (read
    them back with :func:`executor_from_args`)."""
    from leafscope.execution.executor import EXECUTORS

    group = parser.add_argument_group("execution (results do not depend on these)")
    group.add_argument(
        "--executor",
        default="inprocess",
        choices=EXECUTORS,
        help="inprocess (default: here, no cluster) or dask (pip install 'leafscope[dask]')",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Dask workers of a local cluster on 127.0.0.1 (default: the CPU count; with "
        "--device cuda: one per GPU)",
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="join a running Dask scheduler (e.g. tcp://10.0.0.5:8786) instead of starting one; "
        "the workers must see the same files",
    )


def check_executor_args(args: argparse.Namespace) -> None:
    """Refuse bad executor flags before any work (see :func:`executor_from_args`)."""
    from leafscope.execution.executor import check_executor_options

    check_executor_options(
        getattr(args, "executor", "inprocess"),
        getattr(args, "workers", None),
        getattr(args, "scheduler", None),
    )


def executor_from_args(args: argparse.Namespace, device: torch.device | str = "cpu") -> Any:
    """The :class:`leafscope.execution.Executor` that :func:`add_executor_arguments` describe
    (use it as a context manager)."""
    from leafscope.execution import make_executor

    return make_executor(
        getattr(args, "executor", "inprocess"),
        workers=getattr(args, "workers", None),
        scheduler=getattr(args, "scheduler", None),
        device=device,
    )


def model_spec_from_args(args: argparse.Namespace) -> Any:
    """The model options as a :class:`leafscope.execution.ModelSpec` (paths made absolute), what
    a worker needs to load the same model as :func:`model_from_args`."""
    from leafscope.execution import ModelSpec

    def absolute(path: Path | None) -> str | None:
        return None if path is None else str(Path(path).expanduser().resolve())

    return ModelSpec(
        checkpoint=absolute(args.checkpoint),
        factory=args.model,
        factory_kwargs=json.dumps(parse_model_args(args.model_args), sort_keys=True),
        weights=absolute(args.weights),
        normalize=args.normalize,
        output=args.output,
    )


def data_spec_from_args(args: argparse.Namespace, split: str, name: str | None = None) -> Any:
    """The data options as a :class:`leafscope.execution.DataSpec` (see :func:`load_data`)."""
    from leafscope.execution import DataSpec

    data_dir = getattr(args, "data_dir", None)
    return DataSpec(
        name=name if name is not None else args.dataset,
        split=split,
        data_dir=None if data_dir is None else str(data_dir),
        grey=getattr(args, "grey", False),
        resize=getattr(args, "resize", None),
        label_column=getattr(args, "label_column", "label"),
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


def load_data_like(
    args: argparse.Namespace, split: str, name: str, like: Any, *, limit: int | None = None
) -> Any:
    """:func:`load_data` of ``name`` for comparison with the data set ``like``, at one shape.

    ``noise`` becomes uniform [0, 1) noise of ``like``'s point shape (the built-in noise set is
    MNIST's (1, 28, 28)); any other set must have ``like``'s point shape after ``--grey`` /
    ``--resize``.

    Raises:
        InputError: the shapes differ; the message names both and the flags that fix it.
    """
    from leafscope.data import ImageDataset, canonical_name

    data = load_data(args, split, limit=limit, name=name)
    if data.input_shape == like.input_shape:
        return data
    if canonical_name(name) == "noise":
        gen = torch.Generator().manual_seed(0)
        return ImageDataset(
            torch.rand(len(data), *like.input_shape, generator=gen),
            torch.full((len(data),), -1, dtype=torch.int64),
            "noise", split, 0, data.normalization,
            source=f"torch.rand uniform [0,1) of the shape of {like.name}, seed 0",
        )  # fmt: skip
    raise InputError(
        f"{data.name} has points of shape {data.input_shape} but {like.name} has "
        f"{like.input_shape}: the sets are compared at one shape; "
        + _shape_fix(data.input_shape, like.input_shape)
    )


def _shape_fix(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    """The flags that turn points of shape ``got`` into ``want``, or why none can."""
    if len(got) != len(want):
        return "images and vectors cannot be compared: use sets of one kind"
    flags = []
    if len(got) == 3 and got[0] != want[0]:
        flags.append("--grey")  # applies to every set: all become one channel
    if len(got) == 3 and got[1:] != want[1:]:
        flags.append(f"--resize {want[1]},{want[2]}")
    if not flags:
        return "vectors of different lengths cannot be compared: use sets of one width"
    grey = " (every set in one channel: for a model of grey images)" if "--grey" in flags else ""
    return f"pass {' '.join(flags)}{grey}"


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


def load_model_spec(
    spec: str | Path, device: torch.device | str = "cpu", **options: Any
) -> torch.nn.Module:
    """Load a model from a leafscope ``.pt`` checkpoint, a run folder (its newest checkpoint) or
    a TorchScript file, with :func:`leafscope.models.load_model` (``options``: its keyword
    arguments ``weights``, ``normalize``, ``output``)."""
    from leafscope.models import load_model

    return load_model(spec, device=device, **options)


def add_model_arguments(parser: argparse.ArgumentParser, *, model_help: str | None = None) -> None:
    """Add the model source options shared by every command that analyses a trained model:
    ``--checkpoint``, ``--model``, ``--model-args``, ``--weights``, ``--normalize``, ``--output``
    (read them back with :func:`model_from_args`).

    Args:
        parser: the sub-command's parser (one of ``--checkpoint``/``--model`` is required at
            run time, by :func:`model_from_args`).
        model_help: replaces the help of ``--model``.
    """
    group = parser.add_argument_group("model (--checkpoint FILE, or --model MODULE:CALLABLE)")
    group.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a .pt file from leafscope train, a run folder (its newest checkpoint) or a "
        "TorchScript file (torch.jit.save)",
    )
    group.add_argument(
        "--model",
        default=None,
        metavar="MODULE:CALLABLE",
        help=model_help
        or "your model: a factory on the Python path (or path/to/file.py:CALLABLE) returning "
        "an nn.Module; its weights with --weights",
    )
    group.add_argument(
        "--model-args",
        default=None,
        metavar="JSON",
        help="keyword arguments of the --model factory, a JSON object: '{\"num_classes\": 10}'",
    )
    group.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="state_dict file loaded into the model (torch.load weights_only; a dict with a "
        "'state_dict' or 'model' entry, or a leafscope checkpoint, also works)",
    )
    group.add_argument(
        "--normalize",
        default=None,
        metavar="MEAN:STD",
        help="per-channel normalisation applied inside the model, e.g. "
        "0.4914,0.4822,0.4465:0.247,0.243,0.261 or a preset (cifar10, cifar100, imagenet, "
        "mnist); inputs and G stay in [0, 1] pixel units",
    )
    group.add_argument(
        "--output",
        default=None,
        metavar="KEY|INDEX",
        help="the logits in a dict, tuple or object output (e.g. logits or 0)",
    )


def parse_model_args(text: str | None) -> dict[str, Any]:
    """The ``--model-args`` JSON object as a dict (``{}`` when None)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--model-args must be a JSON object (got {text!r}: {exc})") from exc
    if not isinstance(value, dict):
        raise InputError(f'--model-args must be a JSON object like {{"depth": 18}} (got {text!r})')
    return value


def model_from_args(
    args: argparse.Namespace,
    device: torch.device | str = "cpu",
    checkpoint: str | Path | None = None,
) -> torch.nn.Module:
    """The model that the options of :func:`add_model_arguments` describe, in eval mode.

    Args:
        args: parsed arguments.
        device: where to put the model.
        checkpoint: load this file instead of ``args.checkpoint`` (same other options).
    """
    from leafscope.models import load_model

    checkpoint = checkpoint if checkpoint is not None else args.checkpoint
    factory = args.model
    if checkpoint is None and factory is None:
        raise InputError("no model given: pass --checkpoint FILE or --model MODULE:CALLABLE")
    if checkpoint is not None and factory is not None:
        raise InputError(
            f"pass --checkpoint {checkpoint} or --model {factory}, not both (--weights loads "
            "other weights into either)"
        )
    return load_model(
        checkpoint,
        factory=factory,
        factory_kwargs=parse_model_args(args.model_args),
        weights=args.weights,
        normalize=args.normalize,
        output=args.output,
        device=device,
    )


def model_source(args: argparse.Namespace) -> str:
    """A one-line description of the model options, for the JSON results."""
    parts = [str(args.checkpoint) if args.checkpoint is not None else str(args.model)]
    for flag in ("model_args", "weights", "normalize", "output"):
        value = getattr(args, flag, None)
        if value is not None:
            parts.append(f"--{flag.replace('_', '-')} {value}")
    return " ".join(parts)


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
