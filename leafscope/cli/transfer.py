"""``leafscope transfer``: DIM spectra of one model across data sets; last-layer transfer."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    DTYPES,
    add_data_dir_argument,
    add_device_argument,
    add_executor_arguments,
    add_model_arguments,
    add_transform_arguments,
    check_executor_args,
    executor_from_args,
    finish_json,
    load_data,
    load_data_for,
    load_data_like,
    model_from_args,
    model_source,
    model_spec_from_args,
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
    add_executor_arguments(p)  # one task per data set (and one for the reference spectrum)
    p.set_defaults(func=run)


def _names(text: str, option: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise InputError(f"{option} needs at least one name (got {text!r}), e.g. mnist,noise")
    return names


_DATA_FLAGS = ("train_dataset", "data_dir", "grey", "resize", "points", "transfer_train",
               "transfer_val")  # fmt: skip


def transfer_data(settings: tuple, name: str | None) -> tuple:
    """The data of one row: ``(train, val or None)`` of ``name`` at the reference's point
    shape; ``name`` None: ``(reference, None)``, the first ``--points`` test images of the
    training set. ``settings``: sorted pairs of :data:`_DATA_FLAGS` (a top-level source)."""
    from leafscope.experiments.tasks import Source

    args = argparse.Namespace(**dict(settings))
    if name is None:
        return load_data(args, "test", limit=args.points, name=args.train_dataset), None
    ref = Source(transfer_data, (settings, None)).get()[0]  # loaded once per worker
    train = load_data_like(args, "train", name, ref, limit=max(args.points, args.transfer_train))
    try:
        val = load_data_like(args, "test", name, ref, limit=args.transfer_val)
    except InputError:
        val = None
    return train, val


def transfer_unit(task: tuple) -> tuple:
    """One row ``(row, spectra)`` or, for the name None, the reference spectra (a top-level
    task for any executor). ``task``: ``(settings, model spec, name, dtype, device, progress)``.
    """
    from leafscope.applications.transfer import transfer_row
    from leafscope.data import check_model_input
    from leafscope.execution import cached_model, worker_device
    from leafscope.experiments.tasks import Source, exclusive
    from leafscope.information.spectrum import point_spectra

    settings, spec, name, dtype, device, progress = task
    model = cached_model(spec, worker_device(device))
    options = dict(settings)
    if name is None:
        ref = Source(transfer_data, (settings, None)).get()[0]
        with exclusive(model):  # hooks: one thread at a time on the shared model
            return point_spectra(model, ref.images[: options["points"]], dtype=DTYPES[dtype],
                                 progress=progress)  # fmt: skip
    train, val = transfer_data(settings, name)  # used by this task only: not cached
    check_model_input(model, train, source=f"the data ({name})")
    with exclusive(model):
        return transfer_row(
            model, name, train, val, points=options["points"],
            transfer_train_points=options["transfer_train"],
            transfer_val_points=options["transfer_val"], dtype=DTYPES[dtype], progress=progress,
        )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Compute the table, print it as Markdown, write JSON/figure; 0 on success."""
    from leafscope.applications.transfer import transfer_result
    from leafscope.execution import put_cached_model
    from leafscope.experiments.tasks import Source, map_units

    for value, what in ((args.points, "--points"), (args.transfer_train, "--transfer-train")):
        if value < 1:
            raise InputError(f"{what} must be >= 1 (got {value})")
    check_executor_args(args)
    device = resolve_device(args.device)
    model = model_from_args(args, device)
    spec = model_spec_from_args(args)
    put_cached_model(spec, device, model)  # in process: no second load
    flags = {f: getattr(args, f) for f in _DATA_FLAGS}
    flags["data_dir"] = None if args.data_dir is None else str(Path(args.data_dir).resolve())
    settings = tuple(sorted(flags.items()))
    # Every set at the reference's point shape (noise drawn at it); --resize / --grey align them.
    ref = load_data_for(model, args, "test", limit=args.points, name=args.train_dataset)
    Source(transfer_data, (settings, None)).put((ref, None))
    names = list(dict.fromkeys(_names(args.datasets, "--datasets")))
    progress = not args.no_progress and args.executor == "inprocess"
    tasks = [(settings, spec, name, args.dtype, str(device), progress) for name in [*names, None]]
    with executor_from_args(args, device) as executor:
        bar = not args.no_progress and executor.kind != "inprocess"
        *rows, reference = map_units(executor, transfer_unit, tasks, "data sets", bar)
    result = transfer_result(
        [row for row, _ in rows],
        {name: spectra for name, (_, spectra) in zip(names, rows, strict=True)},
        reference,
        {"points": args.points, "transfer_train_points": args.transfer_train,
         "transfer_val_points": args.transfer_val, "dtype": args.dtype},
    )  # fmt: skip
    result.settings.update({"checkpoint": model_source(args), "train_dataset": args.train_dataset})
    print(result.markdown())
    finish_json(args.json, result.to_json())
    if args.figure:
        from leafscope.report.figures.applications import spectra_histograms
        from leafscope.report.save import save_figure

        save_figure(spectra_histograms(result.log10_eigenvalues), args.figure)
        print(f"wrote {args.figure}")
    return 0
