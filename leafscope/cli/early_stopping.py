"""``leafscope early-stopping``: CW-DeepNNK (no validation data) against validation stopping."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    common.add_device_argument(p)
    p.set_defaults(func=run)


def _model(args: argparse.Namespace, data):
    """A fresh model for the data (zoo name or MODULE:CALLABLE, seeded by ``--seed``), checked
    on the data and on ``--layer`` (it must have channels with several values each)."""
    import torch

    from leafscope.data import check_model_input
    from leafscope.models import build_model_for_input
    from leafscope.models.features import layer_features
    from leafscope.models.loading import build_from_factory

    kwargs = common.parse_model_args(args.model_args)
    torch.manual_seed(args.seed)
    if ":" in args.model:
        model = build_from_factory(args.model, kwargs)
    else:
        model = build_model_for_input(
            args.model, data.input_shape, max(data.num_classes, 1), **kwargs
        )
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
    return model


def run(args: argparse.Namespace) -> int:
    from leafscope.experiments.nnk import compare_early_stopping

    common.check_minimum(args, 1, "val_points", "epochs", "patience", "k", "batch_size")
    common.check_minimum(args, 3, "points")
    device = common.resolve_device(args.device)
    data = common.load_data(args, "train")
    n_train = len(data.images) - args.val_points if args.train_points is None else args.train_points
    if n_train < args.points or n_train + args.val_points > len(data.images):
        raise InputError(
            f"--train-points {n_train} + --val-points {args.val_points} must fit in the "
            f"{len(data.images)} training images, with --points {args.points} <= --train-points"
        )
    test = common.load_data_like(args, "test", args.dataset, data)
    x, y = data.images, data.labels
    model = _model(args, data)
    result = compare_early_stopping(
        (x[:n_train], y[:n_train]),
        (x[n_train : n_train + args.val_points], y[n_train : n_train + args.val_points]),
        (test.images, test.labels),
        args.out,
        model=model,
        layer=args.layer,
        points=args.points,
        epochs=args.epochs,
        patience=args.patience,
        k=args.k,
        seed=args.seed,
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        device=device,
    )
    val, cw = result["validation"], result["cw_deepnnk"]
    print(
        f"validation stopping: stop epoch {val['stop_epoch']}, best epoch {val['best_epoch']}, "
        f"test accuracy {100 * val['test_accuracy_at_best']:.2f}%"
    )
    frozen = sum(e >= 0 for e in cw["frozen_at"])
    print(
        f"CW-DeepNNK (no validation data): stop epoch {cw['stop_epoch']} ({frozen}/"
        f"{len(cw['frozen_at'])} channels frozen), test accuracy {100 * cw['test_accuracy']:.2f}%"
    )
    result["settings"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"
    }
    result["settings"]["train_points"] = n_train
    common.finish_json(args.json, result)
    return 0
