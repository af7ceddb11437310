"""``leafscope transfer``: DIM spectra of one model across data sets; last-layer transfer."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    DTYPES,
    add_data_dir_argument,
    add_device_argument,
    add_model_arguments,
    add_transform_arguments,
    finish_json,
    load_data_for,
    load_data_like,
    model_from_args,
    model_source,
    resolve_device,
)
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``transfer`` sub-command."""
    p = subparsers.add_parser(
        "transfer",
        help="DIM spectrum table across data sets and last-layer transfer accuracy",
        description="For a trained model: medians of log10 highest/lowest nonzero eigenvalue, "
        "their difference and log10 trace of G on the first --points training images of each "
        "data set; accuracy after retraining only the last linear layer on each labelled set; "
        "Wasserstein distances between the sets' log-spectra and to the training set.",
    )
    add_model_arguments(p)
    p.add_argument(
        "--datasets",
        default="mnist,fashion-mnist,digits,noise",
        help="comma-separated names or .npz/folder paths (default: all four built-in sets)",
    )
    p.add_argument(
        "--train-dataset", default="mnist", help="the model's training set (default mnist)"
    )
    p.add_argument("--points", type=int, default=250, help="points per spectrum (default 250)")
    p.add_argument(
        "--transfer-train", type=int, default=5000, help="training images for the new last layer"
    )
    p.add_argument("--transfer-val", type=int, default=1000, help="test images scoring it")
    p.add_argument("--dtype", default="float64", choices=sorted(DTYPES))
    add_data_dir_argument(p)
    add_transform_arguments(p)
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--figure", type=Path, default=None, help="save spectra histograms (PNG)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_device_argument(p)
    p.set_defaults(func=run)


def _names(text: str, option: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise InputError(f"{option} needs at least one name (got {text!r}), e.g. mnist,noise")
    return names


def run(args: argparse.Namespace) -> int:
    """Compute the table, print it as Markdown, write JSON/figure; 0 on success."""
    from leafscope.applications.transfer import transfer_table
    from leafscope.data import check_model_input

    for value, what in ((args.points, "--points"), (args.transfer_train, "--transfer-train")):
        if value < 1:
            raise InputError(f"{what} must be >= 1 (got {value})")
    device = resolve_device(args.device)
    model = model_from_args(args, device)
    # Every set at the reference's point shape (noise drawn at it); --resize / --grey align them.
    ref = load_data_for(model, args, "test", limit=args.points, name=args.train_dataset)
    sets = {}
    for name in _names(args.datasets, "--datasets"):
        n_train = max(args.points, args.transfer_train)
        train = load_data_like(args, "train", name, ref, limit=n_train)
        check_model_input(model, train, source=f"the data ({name})")
        try:
            val = load_data_like(args, "test", name, ref, limit=args.transfer_val)
        except InputError:
            val = None
        sets[name] = (train, val)
    result = transfer_table(
        model,
        sets,
        reference=ref.images,
        points=args.points,
        transfer_train_points=args.transfer_train,
        transfer_val_points=args.transfer_val,
        dtype=DTYPES[args.dtype],
        progress=not args.no_progress,
    )
    result.settings.update({"checkpoint": model_source(args), "train_dataset": args.train_dataset})
    print(result.markdown())
    finish_json(args.json, result.to_json())
    if args.figure:
        from leafscope.report.figures.applications import spectra_histograms
        from leafscope.report.save import save_figure

        save_figure(spectra_histograms(result.log10_eigenvalues), args.figure)
        print(f"wrote {args.figure}")
    return 0
