"""``leafscope demo``: the main job (partial LeNet training on MNIST, HTML report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import add_data_dir_argument, add_device_argument, resolve_device
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train LeNet partially on MNIST and write an HTML report (the main job)",
        description="Train LeNet-5 partially on real MNIST, then write OUT/report.html with the "
        "training curve, the spectrum of G on data and noise points, and G across checkpoints.",
    )
    p.add_argument("--out", type=Path, default=Path("leafscope-demo"), help="output folder")
    p.add_argument("--epochs", type=int, default=1, help="training epochs (default: 1)")
    p.add_argument("--train-limit", type=int, default=None, help="use the first N train images")
    p.add_argument("--points", type=int, default=256, help="points for the spectra (default 256)")
    p.add_argument("--seed", type=int, default=0)
    add_data_dir_argument(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: tiny foliation and OOD sections"
    )
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leafscope.demo import DemoConfig, run_demo

    if args.epochs < 1:
        raise InputError(f"--epochs must be >= 1 (got {args.epochs})")
    if args.points < 2:
        raise InputError(f"--points must be >= 2 (got {args.points})")
    if args.train_limit is not None and args.train_limit < 100:
        raise InputError(f"--train-limit must be >= 100 (got {args.train_limit})")
    cfg = DemoConfig(
        out=args.out,
        device=str(resolve_device(args.device)),
        epochs=args.epochs,
        train_limit=args.train_limit,
        points=args.points,
        seed=args.seed,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        quick=args.quick,
        ood_points=64 if args.quick else 256,
    )
    path = run_demo(cfg)
    print(f"report: {path.resolve()}")
    return 0
