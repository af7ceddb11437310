"""``leafscope thermo``: temperature of filters / input features and temperature-based pruning.

leafscope thermo lenet --seeds 5 --optimizer sgd --lr 0.01 --momentum 0 --epochs 8 --json OUT
leafscope thermo gnn --dataset cora --task node --seeds 3 --json OUT
leafscope thermo filters --model vgg --dataset cifar10 --layer block1.0 --seeds 3 --json OUT
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch

from leafscope.cli.common import (
    add_data_dir_argument,
    add_device_argument,
    add_executor_arguments,
    add_transform_arguments,
    check_executor_args,
    executor_from_args,
    resolve_device,
    write_json,
)
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``thermo`` command with its ``lenet``, ``gnn`` and ``filters`` experiments."""
    from leafscope.experiments.thermo.gnn import DEFAULT_RATIOS
    from leafscope.experiments.thermo.lenet import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS

    parser = subparsers.add_parser(
        "thermo",
        help="temperature of filters / GNN input features and temperature-based pruning",
        description="Thermodynamics of SGD (theory §4): train, measure the temperature of "
        "parameter groups, prune hot/cold groups and the baselines, report mean ± std.",
    )
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")

    lenet = sub.add_parser("lenet", help="LeNet-5 on MNIST: hot/cold conv1 filter table")
    lenet.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    lenet.add_argument(
        "--limit", type=int, default=None, help="first N MNIST train/test images (quick runs)"
    )
    lenet.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    lenet.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    lenet.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    lenet.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs (default {DEFAULT_EPOCHS})"
    )
    lenet.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    lenet.add_argument(
        "--window",
        default="1",
        help="epochs averaged for the temperature: a number (default 1 = last epoch) or 'all'",
    )
    lenet.add_argument(
        "--velocity",
        choices=("step", "epoch"),
        default="step",
        help="velocity per optimizer step (default) or displacement per epoch / steps",
    )
    lenet.set_defaults(experiment_func=_run_lenet)

    gnn = sub.add_parser("gnn", help="GCN on Planetoid: input-feature temperature pruning curves")
    gnn.add_argument("--dataset", choices=("cora", "citeseer"), default="cora")
    gnn.add_argument("--task", choices=("node", "link"), default="node")
    gnn.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    gnn.add_argument("--epochs", type=int, default=None, help="epochs (default 200 node, 300 link)")
    gnn.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    gnn.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="Adam weight decay (default 5e-4 node, 0 link)",
    )
    gnn.add_argument(
        "--ratios",
        default=",".join(str(r) for r in DEFAULT_RATIOS),
        help="pruning ratios in percent, comma separated",
    )
    gnn.set_defaults(experiment_func=_run_gnn)

    filters = _register_filters(sub)

    for p in (lenet, gnn, filters):
        p.add_argument("--json", dest="json_out", default=None, help="write the result here")
        p.add_argument("--figure", default=None, help="write a PNG figure here")
        add_data_dir_argument(p)
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
        p.add_argument("--quiet", action="store_true", help="no per-seed progress lines")
        add_device_argument(p)
        add_executor_arguments(p)  # one task per seed
    parser.set_defaults(func=run)


def _register_filters(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``thermo filters``: the filters of ``--layer`` of any zoo or user CNN."""
    from leafscope.experiments.thermo.lenet import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS

    filters = sub.add_parser(
        "filters",
        help="any zoo or user CNN on any image data: temperature of the filters of --layer",
        description="Train --model on --dataset (90/10 train/validation split of its training "
        "set) per seed with a temperature monitor on the filters of the convolution --layer; "
        "report one temperature per filter and the test accuracy without the k hottest, the "
        "k coldest and k random filters (masked, no retraining).",
    )
    filters.add_argument(
        "--model",
        default="lenet",
        help="zoo model built for the data (lenet, cnn, vgg, resnet18) or MODULE:CALLABLE",
    )
    filters.add_argument("--model-args", default=None, metavar="JSON", help="factory kwargs")
    filters.add_argument("--layer", required=True, help="the convolution, e.g. conv1, block1.0")
    filters.add_argument("--dataset", default="mnist", help="data set name or path (mnist)")
    add_transform_arguments(filters)
    filters.add_argument("--train-points", type=int, default=None, help="first N training points")
    filters.add_argument("--test-points", type=int, default=None, help="first N test points")
    filters.add_argument("--k", type=int, default=None, help="filters removed (default: a third)")
    filters.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    filters.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    filters.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    filters.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    filters.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    filters.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    filters.add_argument("--window", default="1", help="epochs averaged: a number or 'all'")
    filters.set_defaults(experiment_func=_run_filters)
    return filters


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen experiment."""
    if not getattr(args, "experiment_func", None):
        raise InputError(
            "thermo needs an experiment: use 'leafscope thermo lenet', '... gnn' or '... filters'"
        )
    if args.threads:
        if args.threads < 0:
            raise InputError(f"--threads must be >= 0, got {args.threads}")
        torch.set_num_threads(args.threads)
    check_executor_args(args)
    return args.experiment_func(args)


def _log(args: argparse.Namespace):
    return None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def _run_lenet(args: argparse.Namespace) -> int:
    from leafscope.experiments.thermo.lenet import run_lenet_experiment

    window = None if args.window == "all" else _parse_int(args.window, "--window")
    device = resolve_device(args.device)
    with executor_from_args(args, device) as executor:
        result = run_lenet_experiment(
            args.seeds,
            optimizer=args.optimizer,
            lr=args.lr,
            momentum=args.momentum,
            epochs=args.epochs,
            batch_size=args.batch_size,
            window=window,
            velocity=args.velocity,
            data_dir=None if args.data_dir is None else str(args.data_dir),
            limit=args.limit,
            device=device,
            log=_log(args),
            executor=executor,
        )
    print(f"{'condition':28s} {'test accuracy (%)':>20s} {'test loss':>18s}")
    return _print_rows_and_write(args, result)


def _print_rows_and_write(args: argparse.Namespace, result) -> int:
    """Print the pruning table (test accuracy and loss, mean ± std over seeds); write JSON."""
    for row in result.rows:
        print(
            f"{row.condition:28s} {row.accuracy_mean:11.2f} ± {row.accuracy_std:5.2f} "
            f"{row.loss_mean:10.3f} ± {row.loss_std:5.3f}"
        )
    _write(args, result)
    return 0


def _filter_model(args: argparse.Namespace, data) -> Any:
    """A picklable factory of fresh models: the zoo model for the data's shape, or the user's."""
    from leafscope.cli.common import parse_model_args
    from leafscope.models import build_model_for_input
    from leafscope.models.loading import build_from_factory

    kwargs = parse_model_args(args.model_args)
    if ":" in args.model:
        return partial(build_from_factory, args.model, kwargs)
    classes = max(data.num_classes, 1)
    return partial(build_model_for_input, args.model, data.input_shape, classes, **kwargs)


_FILTER_DATA_FLAGS = ("dataset", "data_dir", "grey", "resize", "train_points", "test_points")


def filter_data(settings: tuple) -> tuple:
    """``(train, val, test)`` pairs of ``thermo filters`` (90/10 split of the training points,
    seed 0) from the data flags ``settings`` (sorted pairs); a top-level data source."""
    from leafscope.cli.common import load_data, load_data_like
    from leafscope.data import train_val_split

    args = argparse.Namespace(**dict(settings))
    data = load_data(args, "train", limit=args.train_points)
    test = load_data_like(args, "test", args.dataset, data, limit=args.test_points)
    tr, va = train_val_split(len(data), 0.1, 0)
    pairs = (data.images[tr], data.labels[tr]), (data.images[va], data.labels[va])
    return (*pairs, (test.images, test.labels))


def _run_filters(args: argparse.Namespace) -> int:
    from leafscope.cli.common import load_data
    from leafscope.data import check_model_input
    from leafscope.experiments.tasks import Source
    from leafscope.experiments.thermo.filters import run_filter_experiment

    window = None if args.window == "all" else _parse_int(args.window, "--window")
    data = load_data(args, "train", limit=args.train_points)
    if not data.is_image or (data.labels < 0).any():
        raise InputError(
            f"thermo filters trains a CNN on labelled images, but {args.dataset} holds "
            f"{'vectors' if not data.is_image else 'unlabelled points'} of shape "
            f"{data.input_shape}: use a labelled image data set"
        )
    make_model = _filter_model(args, data)
    check_model_input(make_model(), data, source=f"the data ({args.dataset})")
    flags = {f: getattr(args, f) for f in _FILTER_DATA_FLAGS}
    flags["data_dir"] = None if args.data_dir is None else str(Path(args.data_dir).resolve())
    source = Source(filter_data, (tuple(sorted(flags.items())),))
    source.put(filter_data(source.args[0]))  # loaded here once; Dask workers load their own
    device = resolve_device(args.device)
    with executor_from_args(args, device) as executor:
        result = run_filter_experiment(
            make_model, source.part(0), source.part(1), source.part(2),
            layer=args.layer, seeds=args.seeds, k=args.k, window=window,
            device=device, log=_log(args), executor=executor, epochs=args.epochs,
            optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
            momentum=args.momentum if args.optimizer == "sgd" else 0.0, weight_decay=0.0,
        )  # fmt: skip
    result.config.update({"model": args.model, "dataset": data.describe()})
    for seed in result.per_seed:
        temps = ", ".join(f"{t:.3g}" for t in seed["temperatures"])
        print(f"seed {seed['seed']}: temperature per filter of {args.layer}: {temps}")
    return _print_rows_and_write(args, result)


def _run_gnn(args: argparse.Namespace) -> int:
    from leafscope.experiments.thermo.gnn import run_gnn_experiment

    try:
        ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    except ValueError as exc:
        raise InputError(
            f"--ratios {args.ratios!r} is not a comma-separated list of numbers"
        ) from exc
    device = resolve_device(args.device)
    with executor_from_args(args, device) as executor:
        result = run_gnn_experiment(
            args.dataset,
            args.task,
            seeds=args.seeds,
            epochs=args.epochs,
            lr=args.lr,
            weight_decay=args.weight_decay,
            ratios=ratios,
            data_dir=args.data_dir,
            device=device,
            log=_log(args),
            executor=executor,
        )
    criteria = list(dict.fromkeys(c.criterion for c in result.curves))
    print(
        f"{result.metric} (%) of GCN on {args.dataset} ({args.task}) after pruning input features"
    )
    print(f"{'ratio %':>8s} " + " ".join(f"{c:>16s}" for c in criteria))
    for ratio in dict.fromkeys(c.ratio for c in result.curves):
        cells = [result.point(c, ratio) for c in criteria]
        print(
            f"{ratio:8.0f} "
            + " ".join(f"{p.metric_mean:9.2f} ± {p.metric_std:4.2f}" for p in cells)
        )
    _write(args, result)
    return 0


def _write(args: argparse.Namespace, result) -> None:
    if args.json_out:
        write_json(args.json_out, result.to_json())
        print(f"wrote {args.json_out}", file=sys.stderr)
    if args.figure:
        from leafscope.report.figures import thermo as figures
        from leafscope.report.save import save_figure

        save_figure(figures.figure_for(result), args.figure)
        print(f"wrote {args.figure}", file=sys.stderr)


def _parse_int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise InputError(f"{what} {value!r} is not an integer: use e.g. 1, 3 or 'all'") from exc
