"""``leafscope early-stopping``: CW-DeepNNK (no validation data) against validation stopping."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from leafscope.cli import common
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "early-stopping",
        help="channel-wise early stopping without validation data (CW-DeepNNK) vs validation",
        description="Train the same initial network twice: once with a validation set "
        "(stop after --patience epochs without a better validation accuracy, keep the best "
        "epoch), once with CW-DeepNNK (per-channel leave-one-out NNK error of --layer on the "
        "first --points training images; a channel freezes after --patience epochs without "
        "improvement; stop when all are frozen). Reports test accuracy and stopping epochs. "
        "Training uses the first --train-points images of the training file, validation the "
        "--val-points images after them.",
    )
    common.add_data_arguments(p, "image data set")
    p.add_argument("--out", type=Path, required=True, help="folder for the two runs (val/, cw/)")
    p.add_argument("--train-points", type=int, default=None, help="default: all but validation")
    p.add_argument("--val-points", type=int, default=6000, help="validation images (default 6000)")
    p.add_argument(
        "--model",
        default="lenet",
        help="a zoo model built for the data's shape (lenet, cnn, vgg, resnet18; default "
        "lenet) or your factory MODULE:CALLABLE returning a fresh nn.Module",
    )
    p.add_argument(
        "--model-args", default=None, metavar="JSON", help="keyword arguments of the model"
    )
    p.add_argument("--layer", default="conv2", help="layer whose channels are tracked (conv2)")
    p.add_argument("--epochs", type=int, default=15, help="at most this many epochs (15)")
    p.add_argument("--patience", type=int, default=2, help="epochs without improvement (2)")
    p.add_argument("--points", type=int, default=1000, help="training images for the LOO (1000)")
    p.add_argument("--k", type=int, default=15, help="kNN candidates per node (15)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0.9)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    p.add_argument("--seed", type=int, default=0, help="seed of init and batch order (0)")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run seeds --seed .. --seed+N-1, one task each, and report mean ± std (default 1; "
        "with N > 1 the runs of seed S go to OUT/seedS)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    common.add_device_argument(p)
    common.add_executor_arguments(p)  # one task per seed
    p.set_defaults(func=run)


def _factory(args: argparse.Namespace, data) -> Any:
    """A picklable factory of fresh models for the data (zoo name or MODULE:CALLABLE)."""
    from leafscope.models import build_model_for_input
    from leafscope.models.loading import build_from_factory

    kwargs = common.parse_model_args(args.model_args)
    if ":" in args.model:
        return partial(build_from_factory, args.model, kwargs)
    classes = max(data.num_classes, 1)
    return partial(build_model_for_input, args.model, data.input_shape, classes, **kwargs)


def _check_model(args: argparse.Namespace, data, factory) -> None:
    """Check a fresh model on the data and on ``--layer`` (it must have channels with several
    values each)."""
    import torch

    from leafscope.data import check_model_input
    from leafscope.models.features import layer_features

    torch.manual_seed(args.seed)
    model = factory()
    check_model_input(model, data, source=f"the data ({args.dataset})")
    layer = common.parse_layers(args.layer, model)[0]
    with torch.no_grad():
        feats = layer_features(model, data.images[:2], [layer], shape="channels")[layer]
    if feats.ndim != 3 or feats.shape[2] < 2:
        raise InputError(
            f"--layer {layer} gives features of shape {tuple(feats.shape[1:])} per point: "
            "CW-DeepNNK needs a layer with channels of several values each (a convolution, "
            "output (N, C, H, W)); vectors (N, D) and dense layers have none"
        )


_DATA_FLAGS = ("dataset", "data_dir", "grey", "resize", "label_column")


def stopping_data(settings: tuple) -> tuple:
    """``(train, val, test)`` pairs of the command's data flags ``settings`` (sorted pairs of
    :data:`_DATA_FLAGS` plus ``n_train`` and ``val_points``); a top-level data source."""
    values = dict(settings)
    args = argparse.Namespace(**values)
    data = common.load_data(args, "train")
    test = common.load_data_like(args, "test", args.dataset, data)
    x, y, n = data.images, data.labels, values["n_train"]
    hi = n + values["val_points"]
    return (x[:n], y[:n]), (x[n:hi], y[n:hi]), (test.images, test.labels)


def run(args: argparse.Namespace) -> int:
    from leafscope.experiments.nnk import early_stopping_seeds
    from leafscope.experiments.tasks import Source

    common.check_minimum(args, 1, "val_points", "epochs", "patience", "k", "batch_size", "seeds")
    common.check_minimum(args, 3, "points")
    common.check_executor_args(args)
    device = common.resolve_device(args.device)
    data = common.load_data(args, "train")
    n_train = len(data.images) - args.val_points if args.train_points is None else args.train_points
    if n_train < args.points or n_train + args.val_points > len(data.images):
        raise InputError(
            f"--train-points {n_train} + --val-points {args.val_points} must fit in the "
            f"{len(data.images)} training images, with --points {args.points} <= --train-points"
        )
    factory = _factory(args, data)
    _check_model(args, data, factory)
    flags = {f: getattr(args, f) for f in _DATA_FLAGS}
    flags["data_dir"] = None if args.data_dir is None else str(Path(args.data_dir).resolve())
    settings = tuple(sorted({**flags, "n_train": n_train, "val_points": args.val_points}.items()))
    source = Source(stopping_data, (settings,))
    source.put(stopping_data(settings))  # loaded here once; Dask workers load their own
    seeds = list(range(args.seed, args.seed + args.seeds))
    with common.executor_from_args(args, device) as executor:
        result = early_stopping_seeds(
            source, args.out.resolve(), seeds=seeds, model=factory, executor=executor,
            layer=args.layer, points=args.points, epochs=args.epochs, patience=args.patience,
            k=args.k, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
            device=str(device),
        )  # fmt: skip
    for seed, one in zip(seeds, result["per_seed"], strict=True):
        _print_seed(seed, one)
    if len(seeds) > 1:
        for name, s in result["summary"].items():
            print(f"{name}: {s['mean']:.4f} ± {s['std']:.4f} over {len(seeds)} seeds")
    else:  # one seed: its result at the top, as before --seeds
        result.update(result["per_seed"][0])
    result["settings"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"
    }
    result["settings"]["train_points"] = n_train
    common.finish_json(args.json, result)
    return 0


def _print_seed(seed: int, result: dict) -> None:
    val, cw = result["validation"], result["cw_deepnnk"]
    print(
        f"seed {seed}: validation stopping: stop epoch {val['stop_epoch']}, best epoch "
        f"{val['best_epoch']}, test accuracy {100 * val['test_accuracy_at_best']:.2f}%"
    )
    frozen = sum(e >= 0 for e in cw["frozen_at"])
    print(
        f"seed {seed}: CW-DeepNNK (no validation data): stop epoch {cw['stop_epoch']} ({frozen}/"
        f"{len(cw['frozen_at'])} channels frozen), test accuracy {100 * cw['test_accuracy']:.2f}%"
    )
