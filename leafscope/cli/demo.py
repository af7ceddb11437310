"""``leafscope demo``: the main job (partial LeNet training on MNIST, or ResNet-18 on CIFAR-10;
HTML report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import add_data_dir_argument, add_device_argument, resolve_device
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train LeNet partially on MNIST (or ResNet-18 on CIFAR-10) and write an HTML report "
        "(the main job)",
        description="Train LeNet-5 partially on real MNIST (--dataset cifar10: ResNet-18 on a "
        "CIFAR-10 subset, about 6-8 minutes on 2 CPU cores; the archive cifar-10-python.tar.gz "
        "must be on the data search path, it is not downloaded), then write OUT/report.html and "
        "OUT/figures/*.png: training curves, the spectrum of G on data and noise points, G "
        "across checkpoints, filter temperatures and pruning, foliation, OOD, transfer, "
        "denoising and NNK sections.",
    )
    p.add_argument("--out", type=Path, default=Path("leafscope-demo"), help="output folder")
    p.add_argument(
        "--dataset",
        choices=("mnist", "cifar10"),
        default="mnist",
        help="mnist (LeNet-5, default) or cifar10 (ResNet-18)",
    )
    p.add_argument("--epochs", type=int, default=1, help="training epochs (default: 1)")
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="use the first N train images (default: all for mnist, 2000 for cifar10)",
    )
    p.add_argument(
        "--points",
        type=int,
        default=None,
        help="points for the spectra (default: 256 for mnist, 16 for cifar10)",
    )
    p.add_argument("--seed", type=int, default=0)
    add_data_dir_argument(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: tiny analyses (cifar10: tiny training)"
    )
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leafscope.demo import demo_config, require_local, run_demo

    if args.epochs < 1:
        raise InputError(f"--epochs must be >= 1 (got {args.epochs})")
    if args.points is not None and args.points < 2:
        raise InputError(f"--points must be >= 2 (got {args.points})")
    if args.train_limit is not None and args.train_limit < 100:
        raise InputError(f"--train-limit must be >= 100 (got {args.train_limit})")
    if args.dataset != "mnist":
        require_local(args.dataset, args.data_dir)  # one line, exit 2, before any work
    cfg = demo_config(
        args.dataset,
        quick=args.quick,
        out=args.out,
        device=str(resolve_device(args.device)),
        epochs=args.epochs,
        train_limit=args.train_limit,
        points=args.points,
        seed=args.seed,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )
    path = run_demo(cfg)
    print(f"report: {path.resolve()}")
    return 0
