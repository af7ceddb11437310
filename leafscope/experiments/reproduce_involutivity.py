"""Reproduce the involutivity table (Tron & Fioresi): the MNIST CNN with ReLU, GeLU and sigmoid.

Run ``python -m leafscope.experiments.reproduce_involutivity --out runs/involutivity`` to train
``build_model("cnn", activation=A)`` for each activation, then measure dim D_x and
dim span{D_x, [D_x, D_x]} at uniform-noise points in float64 and print the table next to the
published one. Default budget (CPU): one epoch on the first 12000 training images, SGD lr 0.01
with momentum 0.9, batch 60; sigmoid uses Adam lr 1e-3 because SGD does not move it in that
budget. Results go to ``OUT/involutivity_table.json``; existing checkpoints are reused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from leafscope.io import write_json

PUBLISHED = {"relu": (9, 9), "gelu": (9, 44.84), "sigmoid": (9, 45)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m leafscope.experiments.reproduce_involutivity", description=__doc__
    )
    p.add_argument("--out", type=Path, default=Path("runs/involutivity"), help="output folder")
    p.add_argument("--activations", default="relu,gelu,sigmoid", help="comma-separated")
    p.add_argument("--train-limit", type=int, default=12000, help="first N training images")
    p.add_argument("--epochs", type=int, default=1, help="epochs per model")
    p.add_argument("--batch-size", type=int, default=60, help="batch size (published: 60)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (published: 0.01)")
    p.add_argument(
        "--momentum",
        type=float,
        default=0.9,
        help="SGD momentum (published: 0; 0.9 trains in the small CPU budget)",
    )
    p.add_argument(
        "--sigmoid-optimizer", default="adam", help="optimizer for sigmoid (adam, lr 1e-3; or sgd)"
    )
    p.add_argument("--sigmoid-lr", type=float, default=1e-3, help="Adam lr for sigmoid")
    p.add_argument("--points", type=int, default=10, help="uniform-noise points per model")
    p.add_argument("--rtol", type=float, default=1e-10, help="relative rank tolerance")
    p.add_argument("--seed", type=int, default=0, help="seed of init, batches and noise")
    p.add_argument("--test-limit", type=int, default=2000, help="test images for the accuracy")
    return p.parse_args(argv)


def train_one(activation: str, args: argparse.Namespace, train, test) -> tuple[Path, float]:
    """Train (or reuse) the CNN for one activation; return its checkpoint and test accuracy."""
    from leafscope.models import build_model
    from leafscope.training import evaluate, fit, load_checkpoint

    run_dir = args.out / f"cnn-{activation}"
    ckpt = run_dir / f"epoch_{args.epochs:04d}.pt"
    if not ckpt.exists():
        torch.manual_seed(args.seed)
        model = build_model("cnn", activation=activation)
        sigmoid_adam = activation == "sigmoid" and args.sigmoid_optimizer == "adam"
        fit(
            model,
            train,
            None,
            epochs=args.epochs,
            optimizer="adam" if sigmoid_adam else "sgd",
            lr=args.sigmoid_lr if sigmoid_adam else args.lr,
            momentum=0.0 if sigmoid_adam else args.momentum,
            batch_size=args.batch_size,
            seed=args.seed,
            out_dir=run_dir,
            progress=False,
            overwrite=True,
        )
    model = load_checkpoint(ckpt)
    with torch.no_grad():
        _, acc = evaluate(model, test)
    return ckpt, float(acc)


def main(argv: list[str] | None = None) -> int:
    from leafscope.data import load_images
    from leafscope.foliation import involutivity
    from leafscope.training import load_checkpoint

    args = parse_args(argv)
    acts = [a.strip() for a in args.activations.split(",") if a.strip()]
    data = load_images("mnist", "train", limit=args.train_limit)
    test = load_images("mnist", "test", limit=args.test_limit)
    gen = torch.Generator().manual_seed(args.seed)
    noise = torch.rand((args.points, 1, 28, 28), generator=gen)
    rows = {}
    for act in acts:
        t0 = time.perf_counter()
        ckpt, acc = train_one(act, args, (data.images, data.labels), (test.images, test.labels))
        train_s = time.perf_counter() - t0
        res = involutivity(load_checkpoint(ckpt), noise, rtol=args.rtol, inputs="noise")
        rows[act] = {
            "checkpoint": str(ckpt),
            "test_accuracy": acc,
            "train_seconds": train_s,
            "optimizer": "adam" if act == "sigmoid" and args.sigmoid_optimizer == "adam" else "sgd",
            **res.to_json(),
        }
        print(
            f"{act}: test acc {acc:.3f}, dim D {res.mean_dim_distribution:.2f}, with brackets "
            f"{res.mean_dim_with_brackets:.2f} ({res.seconds:.1f} s for {args.points} points); "
            f"by rtol {res.rank_by_rtol}",
            flush=True,
        )
    print(
        "\n| non-linearity | published dim D / with brackets | measured dim D / with brackets "
        "| test acc |"
    )
    print("|---|---|---|---|")
    for act, row in rows.items():
        pub = PUBLISHED.get(act, ("-", "-"))
        print(
            f"| {act} | {pub[0]} / {pub[1]} | {row['mean_dim_distribution']:.2f} / "
            f"{row['mean_dim_with_brackets']:.2f} | {100 * row['test_accuracy']:.1f}% |"
        )
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(args.out / "involutivity_table.json", {"settings": settings, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
