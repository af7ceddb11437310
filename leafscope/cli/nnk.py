"""``leafscope nnk``: NNK manifold graph metrics per layer and epoch of a run, and DeepNNK LOO."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from leafscope.cli.common import (
    add_data_arguments,
    add_device_argument,
    add_executor_arguments,
    check_executor_args,
    executor_from_args,
    finish_json,
    load_data,
    load_data_for,
    load_data_like,
    parse_layers,
    resolve_device,
)
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "nnk",
        help="NNK graph geometry (MGMs) of layer features across the epochs of a run",
        description="For every epoch checkpoint of a run: manifold graph metrics (neighbours, "
        "polytope diameter, local dimension, orientation) of the NNK graph of each layer's "
        "features on the first N training points, the DeepNNK leave-one-out error on the last "
        "hidden layer, the test error, and their Pearson correlation across epochs.",
    )
    p.add_argument("--run", required=True, type=Path, help="run folder from leafscope train")
    p.add_argument("--layers", required=True, help="comma-separated layer names, e.g. conv1,fc1")
    p.add_argument("--points", type=int, default=1000, help="first N training points (1000)")
    p.add_argument("--test-points", type=int, default=10000, help="test points for the error")
    p.add_argument("--k", type=int, default=15, help="kNN candidates per node (15)")
    p.add_argument("--kernel", default="cosine", choices=["cosine", "gaussian"])
    add_data_arguments(p, "data set name or .npz/folder path")
    p.add_argument("--include-initial", action="store_true", help="also measure epoch 0")
    p.add_argument(
        "--step-checkpoints",
        action="store_true",
        help="also measure the step_NNNNNNNN.pt checkpoints (train --checkpoint-every-steps)",
    )
    p.add_argument(
        "--no-orientation",
        action="store_true",
        help="skip the orientation MGM (the slowest one on wide layers)",
    )
    p.add_argument("--json", type=Path, required=True, help="write the result here")
    p.add_argument("--figures", type=Path, default=None, help="write PNG figures to this folder")
    add_device_argument(p)
    add_executor_arguments(p)  # one task per (checkpoint, layer)
    p.set_defaults(func=run)


def _layers(text: str, run_dir: Path) -> tuple[list[str], torch.nn.Module]:
    """The checked layer names and the run's last epoch model."""
    from leafscope.training import list_checkpoints, load_checkpoint

    infos = [i for i in list_checkpoints(run_dir) if i.kind == "epoch"]
    if not infos:
        raise InputError(f"{run_dir} holds no epoch checkpoints: train the run first")
    model = load_checkpoint(infos[-1].path)
    return parse_layers(text, model), model


_DATA_FLAGS = ("dataset", "data_dir", "grey", "resize", "label_column", "points", "test_points")


def nnk_data(settings: tuple) -> tuple[torch.Tensor, ...]:
    """``(train images, train labels, test images, test labels)`` of ``leafscope nnk`` from
    its data flags ``settings`` (sorted pairs of :data:`_DATA_FLAGS`); a top-level source."""
    args = argparse.Namespace(**dict(settings))
    train = load_data(args, "train", limit=args.points)
    test = load_data_like(args, "test", args.dataset, train, limit=args.test_points)
    return train.images, train.labels, test.images, test.labels


def _data_source(args: argparse.Namespace, train, test) -> Any:
    """The :class:`~leafscope.experiments.tasks.Source` of :func:`nnk_data`, holding the data
    loaded here already."""
    from leafscope.experiments.tasks import Source

    flags = {f: getattr(args, f) for f in _DATA_FLAGS}
    flags["data_dir"] = None if args.data_dir is None else str(Path(args.data_dir).resolve())
    source = Source(nnk_data, (tuple(sorted(flags.items())),))
    source.put((train.images, train.labels, test.images, test.labels))
    return source


def run(args: argparse.Namespace) -> int:
    from leafscope.experiments.nnk import run_geometry
    from leafscope.report.figures.nnk import (
        plot_loo_vs_test,
        plot_mgm_distributions,
        plot_mgm_epochs,
    )
    from leafscope.report.save import save_figure

    for flag in ("points", "test_points", "k"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 1 (got {getattr(args, flag)})")
    if args.points < 3:
        raise InputError(f"--points must be >= 3 for an NNK graph (got {args.points})")
    check_executor_args(args)
    device = resolve_device(args.device)
    layers, last = _layers(args.layers, args.run)
    train = load_data_for(last, args, "train", limit=args.points)
    test = load_data_like(args, "test", args.dataset, train, limit=args.test_points)
    source = _data_source(args, train, test)
    with executor_from_args(args, device) as executor:
        geometry = run_geometry(
            args.run,
            source.part(0),
            source.part(1),
            layers,
            test_images=source.part(2),
            test_labels=source.part(3),
            k=args.k,
            kernel=args.kernel,
            include_initial=args.include_initial,
            step_checkpoints=args.step_checkpoints,
            orientation=not args.no_orientation,
            device=device,
            executor=executor,
        )
    out = geometry.to_json()
    out["dataset"] = args.dataset
    if args.figures is not None:
        args.figures.mkdir(parents=True, exist_ok=True)
        figures = {
            "mgm_distributions.png": plot_mgm_distributions(geometry),
            "mgm_epochs.png": plot_mgm_epochs(geometry),
            "loo_vs_test.png": plot_loo_vs_test(geometry),
        }
        for name, fig in figures.items():
            save_figure(fig, args.figures / name, dpi=110)
        out["figures"] = [str(args.figures / name) for name in figures]
    r = geometry.pearson
    print(
        f"nnk: {len(geometry.epochs)} checkpoints, layers {','.join(layers)}, LOO layer "
        f"{geometry.loo_layer}; last LOO error {geometry.loo_errors[-1]:.4f}; Pearson r(LOO, test) "
        + (f"{r:.3f}" if r is not None else "n/a (fewer than 3 epochs)")
    )
    finish_json(args.json, out)
    return 0
