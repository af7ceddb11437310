"""``leafscope train``: train an image classifier with checkpoints (partial training, resume)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from leafscope.cli.common import add_data_arguments, add_device_argument, load_data, resolve_device
from leafscope.errors import InputError
from leafscope.models import ACTIVATIONS, IMAGE_MODEL_NAMES, build_model_for_input


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train a classifier on an image data set, checkpointing every epoch",
        description="Train LeNet-5, the data-manifold CNN or an MLP on an image data set. Writes "
        "RUN_DIR/epoch_NNNN.pt (epoch_0000 = initial weights), optional step_NNNNNNNN.pt and "
        "RUN_DIR/metrics.json. Inputs are pixels/255 in [0, 1], not mean/std normalised.",
    )
    add_data_arguments(p, "image data set")
    p.add_argument(
        "--model",
        default="lenet",
        help="lenet, cnn, resnet18, vgg (images) or mlp (images or vectors); default: lenet",
    )
    p.add_argument("--activation", default="relu", help="relu, gelu or sigmoid (default: relu)")
    p.add_argument("--epochs", type=int, default=1, help="epochs to train (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, split and order (default: 0)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder (default: runs/DATASET-MODEL-ACTIVATION-sSEED)",
    )
    p.add_argument("--optimizer", default="sgd", help="sgd or adam (default: sgd)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default: 0.01)")
    p.add_argument(
        "--momentum",
        type=float,
        default=0.9,
        help="SGD momentum (default: 0.9; --momentum 0 is plain SGD, the earlier default)",
    )
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (default: 0)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument(
        "--lr-step",
        type=int,
        default=None,
        help="multiply the learning rate by --lr-gamma every this many epochs",
    )
    p.add_argument("--lr-gamma", type=float, default=0.1, help="step factor (default: 0.1)")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of the training split held out for validation (default: 0.1)",
    )
    p.add_argument(
        "--target-val-accuracy",
        type=float,
        default=None,
        help="stop after the first epoch reaching this validation accuracy (0-1)",
    )
    p.add_argument(
        "--checkpoint-every-steps",
        type=int,
        default=None,
        help="also checkpoint every K optimizer steps",
    )
    p.add_argument(
        "--limit", type=int, default=None, help="use only the first N training points (quick runs)"
    )
    p.add_argument(
        "--augment-rotation",
        type=float,
        default=0.0,
        metavar="DEG",
        help="rotate each training image by a random angle in [-DEG, DEG] (default: 0 = off)",
    )
    p.add_argument(
        "--augment",
        default="",
        metavar="LIST",
        help="comma-separated per-batch augmentations: crop (random crop after zero padding by "
        "--crop-padding pixels), flip (horizontal flip with probability 1/2); seeded per batch, "
        "applied after --augment-rotation (default: none)",
    )
    p.add_argument(
        "--crop-padding", type=int, default=4, help="padding of --augment crop (default: 4)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the checkpoints already in --out and start again",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_device_argument(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.model not in IMAGE_MODEL_NAMES:
        raise InputError(
            f"unknown --model {args.model!r}: train supports {', '.join(IMAGE_MODEL_NAMES)}"
        )
    checks = [
        (
            args.activation in ACTIVATIONS,
            f"unknown --activation {args.activation!r}: use one of {', '.join(ACTIVATIONS)}",
        ),
        (
            args.optimizer in ("sgd", "adam"),
            f"unknown --optimizer {args.optimizer!r}: use sgd or adam",
        ),
        (args.epochs >= 1, f"--epochs must be >= 1 (got {args.epochs})"),
        (math.isfinite(args.lr) and args.lr > 0, f"--lr must be > 0 (got {args.lr})"),
        (args.batch_size >= 1, f"--batch-size must be >= 1 (got {args.batch_size})"),
        (0 <= args.val_fraction < 1, f"--val-fraction must be in [0, 1) (got {args.val_fraction})"),
        (args.limit is None or args.limit >= 2, f"--limit must be >= 2 (got {args.limit})"),
        (args.crop_padding >= 0, f"--crop-padding must be >= 0 (got {args.crop_padding})"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def run(args: argparse.Namespace) -> int:
    """Load the data, build the model, train with :func:`leafscope.training.fit`; 0 on success."""
    from leafscope.data import train_val_split
    from leafscope.training import fit, parse_augment

    _check(args)
    augment = parse_augment(args.augment, crop_padding=args.crop_padding)
    device = resolve_device(args.device)
    out = args.out or Path("runs") / f"{args.dataset}-{args.model}-{args.activation}-s{args.seed}"
    data = load_data(args, "train", limit=args.limit)
    train_idx, val_idx = train_val_split(len(data.images), args.val_fraction, args.seed)
    train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    images, labels = data.images, data.labels
    torch.manual_seed(args.seed)
    model = build_model_for_input(  # images (C, H, W) or vectors (D,), at the data's shape
        args.model, data.input_shape, data.num_classes, activation=args.activation
    )
    val = (images[val_idx], labels[val_idx]) if len(val_idx) else None
    meta = {
        "dataset": data.describe(),
        "val_fraction": args.val_fraction,
        "split_seed": args.seed,
        "limit": args.limit,
        "train_points": len(train_idx),
        "val_points": len(val_idx),
        "normalization": data.describe().get("normalization"),
    }
    result = fit(
        model,
        (images[train_idx], labels[train_idx]),
        val,
        epochs=args.epochs,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum if args.optimizer == "sgd" else 0.0,  # Adam has no momentum
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        lr_step=args.lr_step,
        lr_gamma=args.lr_gamma,
        seed=args.seed,
        device=device,
        out_dir=out,
        checkpoint_every_steps=args.checkpoint_every_steps,
        target_val_accuracy=args.target_val_accuracy,
        resume=args.resume,
        progress=not args.no_progress,
        meta=meta,
        overwrite=args.overwrite,
        augment_rotation=args.augment_rotation,
        augment=augment,
    )
    for rec in result.history:
        val_text = (
            f"val loss {rec['val_loss']:.4f} acc {rec['val_accuracy']:.4f}"
            if rec["val_accuracy"] is not None
            else "no validation"
        )
        print(
            f"epoch {rec['epoch']}: train loss {rec['train_loss']:.4f} "
            f"acc {rec['train_accuracy']:.4f}, {val_text}, {rec['seconds']:.1f} s"
        )
    print(f"stopped: {result.stopped_reason}; {len(result.checkpoints)} checkpoints in {out}")
    return 0
