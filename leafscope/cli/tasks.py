"""Commands generated from tasks: flags from the fields of the specs and the task's ``Params``.

One vocabulary for every task command:

* model (from :class:`leafscope.models.ModelSpec`): ``--checkpoint``, ``--model``,
  ``--model-args``, ``--weights``, ``--normalize``, ``--output``;
* data (from :class:`leafscope.data.DataSpec`): ``--dataset`` (``--in`` where the task names
  its data the in-distribution set), ``--split``, ``--data-dir``, ``--grey``, ``--resize``,
  ``--label-column``, ``--holdout``, ``--data-seed``; per-point tasks add ``--points`` and
  ``--indices``;
* the task's parameters: one flag per field of its ``Params`` (``--field-name``);
* the run (from :class:`leafscope.execution.RunOptions`): ``--out DIR`` (the results folder,
  in every command), ``--json FILE``, ``--resume``, ``--shard I/N`` (1-based),
  ``--shard-size``, ``--executor``, ``--workers``, ``--scheduler``, ``--connect-timeout``,
  ``--threads``, ``--device``, ``--no-progress``.

Values are parsed here and validated by the dataclasses, so a bad value is one line naming the
flag (see :func:`leafscope.cli.main.main`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from leafscope.errors import InputError

__all__ = [
    "add_task_command",
    "job_from_args",
    "options_from_args",
    "params_from_args",
    "run_task_command",
]

#: Flags of the model spec: field -> (flag, help).
MODEL_FLAGS = {
    "checkpoint": (
        "--checkpoint",
        "a .pt file from leafscope train, a run folder (its newest checkpoint) or a "
        "TorchScript file (torch.jit.save)",
    ),
    "factory": (
        "--model",
        "your model: MODULE:CALLABLE on the Python path (or path/to/file.py:CALLABLE) "
        "returning an nn.Module; its weights with --weights",
    ),
    "factory_kwargs": (
        "--model-args",
        "keyword arguments of the --model factory, a JSON object: '{\"num_classes\": 10}'",
    ),
    "weights": (
        "--weights",
        "state_dict file loaded into the model (torch.load weights_only; a dict holding "
        "one, or a leafscope checkpoint, also works)",
    ),
    "normalize": (
        "--normalize",
        "per-channel MEAN:STD applied inside the model (e.g. 0.4914,0.4822,0.4465:0.247,"
        "0.243,0.261) or a preset (cifar10, cifar100, imagenet, mnist); G stays in [0, 1] "
        "pixel units",
    ),
    "output": ("--output", "the logits in a dict, tuple or object output (e.g. logits or 0)"),
}

MODEL_METAVARS = {
    "checkpoint": "FILE",
    "factory": "MODULE:CALLABLE",
    "factory_kwargs": "JSON",
    "weights": "FILE",
    "normalize": "MEAN:STD",
    "output": "KEY|INDEX",
}
DATA_METAVARS = {
    "split": "{train,test,all}",
    "data_dir": "DIR",
    "resize": "H,W",
    "label_column": "COLUMN",
    "text_column": "COLUMN",
    "holdout": "F",
    "seed": "SEED",
}

#: Flags of the data spec: field -> (flag, help); ``name`` takes the task's data flag.
DATA_FLAGS = {
    "split": ("--split", "train, test or all (train then test; a set without a split: all)"),
    "data_dir": ("--data-dir", "folder searched first for data files"),
    "grey": ("--grey", "convert images to one channel (ITU-R 601 luma)"),
    "resize": ("--resize", "resize images bilinearly to H,W (antialiased when shrinking)"),
    "label_column": ("--label-column", "label column of a .csv ('none': unlabelled)"),
    "text_column": (
        "--text-column",
        "the text column of a .csv (or key of a .jsonl) of texts for a text classifier",
    ),
    "holdout": (
        "--holdout",
        "fraction F in (0, 1) of a set without a train/test split held out as its test split "
        "(seeded by --data-seed)",
    ),
    "seed": ("--data-seed", "seed of the point sample, the holdout split and generated sets"),
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), not a usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        hint = ""
        if "--shard" in message:
            hint = " (slices count from 1: --shard 1/4 .. 4/4)"
        self.exit(2, f"{self.prog}: error: {message}{hint} (see {self.prog} --help)\n")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _converter(tp: Any, flag: str) -> Any:
    """A function parsing a flag's text into a value of type ``tp`` (InputError otherwise)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item, *_rest) = typing.get_args(tp) or (str,)
        one = _converter(item, flag)
        return lambda text: tuple(one(t.strip()) for t in text.split(",") if t.strip())
    if tp in (int, float):
        name = "an integer" if tp is int else "a number"

        def number(text: str) -> Any:
            try:
                return tp(text)
            except ValueError:
                raise InputError(f"{flag} must be {name} (got {text!r})") from None

        return number
    return str


def _field_flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _add_field(group: Any, field: dataclasses.Field, tp: Any, flag: str, help_text: str) -> None:
    tp, optional = _unwrap_optional(tp)
    dest = field.name
    default = field.default if field.default is not dataclasses.MISSING else None
    if tp is bool:
        if default:
            group.add_argument("--no-" + flag[2:], dest=dest, action="store_false", help=help_text)
        else:
            group.add_argument(flag, dest=dest, action="store_true", help=help_text)
        return
    choices = field.metadata.get("choices")
    shown = default
    if isinstance(default, tuple):
        shown = ",".join(str(d) for d in default)
    text = help_text + ("" if default is None else f" (default: {shown})")
    group.add_argument(
        flag,
        dest=dest,
        default=argparse.SUPPRESS,
        metavar=field.metadata.get("metavar")
        or ("{" + ",".join(choices) + "}" if choices else None),
        help=text,
    )


def _hints(cls: type) -> dict[str, Any]:
    import sys

    module = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, vars(module) if module else None)


def _params_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = _hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def _convert(field: dataclasses.Field, tp: Any, text: Any, flag: str) -> Any:
    if not isinstance(text, str):
        return text
    inner, optional = _unwrap_optional(tp)
    if optional and text.lower() in ("none", "all") and inner is not str:
        return None
    value = _converter(inner, flag)(text)
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise InputError(f"{flag} must be one of {', '.join(choices)} (got {text!r})")
    return value


def add_task_command(subparsers: Any, task_cls: type) -> argparse.ArgumentParser:
    """Add the command of ``task_cls``: its flags generated from the specs, its ``Params`` and
    the run options."""
    from leafscope.data.spec import DataSpec
    from leafscope.models.spec import ModelSpec

    parser = subparsers.add_parser(
        task_cls.name,
        help=task_cls.summary,
        description=task_cls.description or task_cls.summary,
    )
    if task_cls.needs_model:
        group = parser.add_argument_group("model (--checkpoint FILE, or --model MODULE:CALLABLE)")
        for field in dataclasses.fields(ModelSpec):
            flag, help_text = MODEL_FLAGS[field.name]
            group.add_argument(
                flag,
                dest=f"model__{field.name}",
                default=None,
                metavar=MODEL_METAVARS[field.name],
                help=help_text,
            )
    if task_cls.needs_data:
        group = parser.add_argument_group("data")
        data_flag = getattr(task_cls, "data_flag", "--dataset")
        group.add_argument(
            data_flag,
            dest="data__name",
            metavar="NAME|PATH",
            default=getattr(task_cls, "default_dataset", "mnist"),
            help="data set name (mnist, fashion-mnist, cifar10, noise, ...) or a path: .npz, "
            ".npy, .csv, image folder, IDX file; texts: .csv with a text column, .jsonl, .txt "
            "(default: %(default)s)",
        )
        defaults = {f.name: f.default for f in dataclasses.fields(DataSpec)}
        for name, (flag, help_text) in DATA_FLAGS.items():
            if name == "grey":
                group.add_argument(flag, dest="data__grey", action="store_true", help=help_text)
            else:
                default = (
                    getattr(task_cls, "default_split", defaults[name])
                    if name == "split"
                    else defaults[name]
                )
                group.add_argument(
                    flag,
                    dest=f"data__{name}",
                    default=default,
                    metavar=DATA_METAVARS[name],
                    help=help_text + ("" if default is None else " (default: %(default)s)"),
                )
        if task_cls.per_point:
            group.add_argument(
                "--points",
                dest="select__points",
                metavar="N|all",
                default=str(getattr(task_cls, "default_points", 256)),
                help="how many points: a seeded sample stratified by label, or 'all' "
                "(default: %(default)s)",
            )
            group.add_argument(
                "--indices",
                dest="select__indices",
                metavar="I,J,...",
                default=None,
                help="comma-separated point indices instead of --points",
            )
    fields = _params_fields(task_cls.Params)
    if fields:
        group = parser.add_argument_group(f"{task_cls.name} parameters")
        for field, tp in fields:
            _add_field(group, field, tp, _field_flag(field), field.metadata.get("help", ""))
    _add_run_flags(parser)
    parser.set_defaults(func=lambda args: run_task_command(task_cls, args))
    return parser


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    from leafscope.execution.executor import EXECUTORS

    group = parser.add_argument_group("run (results do not depend on these)")
    group.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="results folder: Parquet shards, _settings.json, _summary.json",
    )
    group.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="write the result document here"
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="skip the verified shards in --out; recompute damaged or foreign ones",
    )
    group.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only slice I of N of the shards, I counted from 1 as job arrays "
        "number their tasks (1/N .. N/N); then leafscope merge --out",
    )
    group.add_argument(
        "--shard-size",
        metavar="N",
        default=None,
        help="units per shard (default: 1000 points; one model, seed or layer per shard for "
        "tasks of such units)",
    )
    group.add_argument(
        "--executor",
        default="inprocess",
        choices=EXECUTORS,
        help="inprocess (default) or dask (pip install 'leafscope[dask]')",
    )
    group.add_argument(
        "--workers",
        metavar="N",
        default=None,
        help="Dask workers of a local cluster on 127.0.0.1 (default: the CPU "
        "count; with CUDA: one per GPU)",
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="join a running Dask scheduler (tcp://HOST:8786); the workers must see the same files",
    )
    group.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        default="30",
        help="seconds to wait for the scheduler and its first worker (default: 30)",
    )
    group.add_argument(
        "--threads",
        metavar="N",
        default=None,
        help="torch threads per process (default: torch's in process, 1 per Dask worker)",
    )
    group.add_argument(
        "--device",
        metavar="DEVICE",
        default="auto",
        help="auto (CUDA when available, else cpu), cpu, cuda or cuda:N",
    )
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _int(text: str | None, flag: str, minimum: int = 1) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{flag} must be an integer (got {text!r})") from None
    if value < minimum:
        raise InputError(f"{flag} must be >= {minimum} (got {value})")
    return value


def params_from_args(task_cls: type, args: argparse.Namespace) -> Any:
    """The task's ``Params`` from the parsed flags (unset flags keep the defaults)."""
    values = {}
    for field, tp in _params_fields(task_cls.Params):
        if hasattr(args, field.name):
            values[field.name] = _convert(field, tp, getattr(args, field.name), _field_flag(field))
    try:
        return task_cls.Params(**values)
    except InputError as exc:
        raise InputError(_flagged(str(exc), task_cls)) from None


def _flagged(message: str, task_cls: type) -> str:
    """A library message with the first parameter name it starts with shown as its flag."""
    for field in dataclasses.fields(task_cls.Params):
        if message.startswith(field.name + " ") or message.startswith(field.name + ":"):
            return _field_flag(field) + message[len(field.name) :]
    return message


def model_from_args(args: argparse.Namespace) -> Any:
    """The :class:`leafscope.models.ModelSpec` of the model flags (None when none is given)."""
    from leafscope.models.spec import ModelSpec

    values = {
        f.name: getattr(args, f"model__{f.name}", None) for f in dataclasses.fields(ModelSpec)
    }
    if values["checkpoint"] is None and values["factory"] is None:
        given = [MODEL_FLAGS[k][0] for k in ("factory_kwargs", "weights", "normalize", "output")
                 if values[k] is not None]  # fmt: skip
        if given:
            raise InputError(
                f"{', '.join(given)} apply to the model of --checkpoint or --model: give one "
                "(the other models of a command, e.g. ood --checkpoints, take its options)"
            )
        return None
    if values["checkpoint"] is not None and values["factory"] is not None:
        raise InputError(
            f"pass --checkpoint {values['checkpoint']} or --model {values['factory']}, not both "
            "(--weights loads other weights into either)"
        )
    if values["factory_kwargs"] is None:
        values["factory_kwargs"] = "{}"
    else:
        try:
            parsed = json.loads(values["factory_kwargs"])
        except json.JSONDecodeError as exc:
            raise InputError(
                f"--model-args must be a JSON object (got {values['factory_kwargs']!r}: {exc})"
            ) from None
        if not isinstance(parsed, dict):
            raise InputError(
                f'--model-args must be a JSON object like {{"depth": 18}} '
                f"(got {values['factory_kwargs']!r})"
            )
        values["factory_kwargs"] = json.dumps(parsed, sort_keys=True)
    return ModelSpec(**values)


def data_from_args(args: argparse.Namespace) -> Any:
    """The :class:`leafscope.data.DataSpec` of the data flags."""
    from leafscope.data.spec import DataSpec

    holdout = args.data__holdout
    if holdout is not None:
        try:
            holdout = float(holdout)
        except ValueError:
            raise InputError(f"--holdout must be a fraction in (0, 1) (got {holdout!r})") from None
    split = args.data__split
    if split not in ("train", "test", "all"):
        raise InputError(f"--split must be train, test or all (got {split!r})")
    try:
        return DataSpec(
            name=args.data__name,
            split=split,
            data_dir=args.data__data_dir,
            grey=args.data__grey,
            resize=args.data__resize,
            label_column=args.data__label_column,
            text_column=args.data__text_column,
            holdout=holdout,
            seed=_int(str(args.data__seed), "--data-seed", minimum=0),
        )
    except InputError as exc:
        text = str(exc)
        if text.startswith("holdout"):
            text = "--" + text
        raise InputError(text) from None


def job_from_args(task_cls: type, args: argparse.Namespace) -> Any:
    """The :class:`leafscope.execution.Job` the flags describe."""
    from leafscope.execution.runner import make_job

    params = params_from_args(task_cls, args)
    model = model_from_args(args) if task_cls.needs_model else None
    data = data_from_args(args) if task_cls.needs_data else None
    points = indices = None
    if task_cls.needs_data and task_cls.per_point:
        if args.select__indices:
            try:
                indices = [int(t) for t in args.select__indices.split(",") if t.strip()]
            except ValueError:
                raise InputError(
                    f"--indices must be comma-separated integers (got {args.select__indices!r})"
                ) from None
        elif str(args.select__points).lower() != "all":
            points = _int(args.select__points, "--points")
    return make_job(
        task_cls.name,
        params,
        model=model,
        data=data,
        points=points,
        indices=indices,
        seed=data.seed if data is not None else 0,
        shard_size=None if args.shard_size is None else _int(args.shard_size, "--shard-size"),
    )


def options_from_args(args: argparse.Namespace) -> Any:
    """The :class:`leafscope.execution.RunOptions` of the run flags."""
    from leafscope.execution.results import parse_slice
    from leafscope.execution.runner import RunOptions

    if args.executor == "inprocess":
        for flag, value in (("--scheduler", args.scheduler), ("--workers", args.workers)):
            if value is not None:
                raise InputError(f"{flag} {value} needs --executor dask")
    try:
        timeout = float(args.connect_timeout)
    except ValueError:
        raise InputError(
            f"--connect-timeout must be seconds (got {args.connect_timeout!r})"
        ) from None
    part = (1, 1)
    if args.shard:
        try:
            part = parse_slice(args.shard)
        except InputError as exc:
            raise InputError(f"--shard: {exc}") from None
    if (args.shard or args.resume) and args.out is None:
        raise InputError("--shard and --resume need --out DIR (a results folder)")
    return RunOptions(
        device=args.device,
        executor=args.executor,
        workers=_int(args.workers, "--workers"),
        scheduler=args.scheduler,
        connect_timeout=timeout,
        threads=_int(args.threads, "--threads"),
        resume=args.resume,
        part=part,
        progress=not args.no_progress,
    )


def run_task_command(task_cls: type, args: argparse.Namespace) -> int:
    """Run the task the flags describe; print its summary; write ``--json``."""
    from leafscope.execution.runner import run
    from leafscope.io import write_json

    job = job_from_args(task_cls, args)
    options = options_from_args(args)
    if args.json is not None and args.json.is_dir():
        import errno

        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(args.json))
    result = run(job, options, out=args.out)
    if not result.complete:
        i, n = options.part
        print(
            f"slice {i}/{n}: computed {len(result.computed)} shard(s), skipped "
            f"{len(result.skipped)}; when every slice is done: leafscope merge {args.out}"
        )
        return 0
    for shard, reason in sorted(result.recomputed.items()):
        print(f"recomputed shard {shard}: {reason}")
    summary = result.payload["summary"]
    for line in result.task.terminal_lines(summary):
        print(line)
    if args.out is not None:
        from leafscope.report.results import write_result_figures

        figures = write_result_figures(args.out)
        drawn = f" and {len(figures)} figure(s) in _files" if figures else ""
        print(
            f"wrote {result.settings['num_shards']} shard(s), _summary.json{drawn} under {args.out}"
        )
    if args.json is not None:
        document = {
            **result.payload,
            **{k: v for k, v in describe_inputs(result).items()},
            **result.task.payload(result.rows, summary, result.context),
        }
        write_json(args.json, document)
        print(f"wrote {args.json}")
    return 0


def describe_inputs(result: Any) -> dict[str, Any]:
    """The model and data descriptions for the result document."""
    from leafscope.execution.runner import describe_job

    info = describe_job(result.job, result.context)
    info.pop("task", None)
    if "data_description" in info:
        info["dataset"] = info.pop("data_description")
    info["selection"] = result.settings["selection"]
    return info
