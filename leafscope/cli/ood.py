"""``leafscope ood``: every OOD detector on every in/out pair, over one or several models."""

from __future__ import annotations

import argparse
from pathlib import Path

from leafscope.cli.common import (
    add_data_dir_argument,
    add_device_argument,
    add_executor_arguments,
    add_model_arguments,
    add_transform_arguments,
    check_executor_args,
    executor_from_args,
    finish_json,
    load_data,
    load_data_like,
    model_from_args,
    model_source,
    resolve_device,
)
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ood`` sub-command."""
    p = subparsers.add_parser(
        "ood",
        help="out-of-distribution detection: DIM and leaf detectors against standard baselines",
        description="Fits every detector on in-distribution training images and reports AUROC, "
        "FPR at 95%% TPR, AUPR-in and AUPR-out (in = positive) on in-distribution test images "
        "against each --out set. With several models (--checkpoints, or --seeds N "
        "--train-epochs E to train them) the table gives mean and std over models.",
    )
    add_model_arguments(
        p,
        model_help="your model MODULE:CALLABLE (with --weights), or with --seeds the "
        "architecture to train (default lenet)",
    )
    p.add_argument("--checkpoints", help="comma-separated .pt files (e.g. three seeds)")
    p.add_argument("--seeds", type=int, help="train this many seeds (0..N-1) first")
    p.add_argument("--train-epochs", type=int, default=2, help="epochs per trained seed")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/ood"), help="where --seeds trains")
    p.add_argument("--in", dest="in_dataset", default="mnist", help="in-distribution data set")
    p.add_argument(
        "--out",
        default=None,
        help="comma-separated out sets (default fashion-mnist,noise; with --protocol: every "
        "out set of --in whose files are present)",
    )
    p.add_argument("--detectors", default="all", help="comma-separated names or 'all'")
    p.add_argument("--points", type=int, default=1000, help="test points per set (default 1000)")
    p.add_argument("--fit-points", type=int, default=5000, help="training points for fit")
    p.add_argument("--leaf-steps", type=int, default=20, help="path steps of leaf-distance")
    p.add_argument("--leaf-anchors", type=int, default=1, help="paths per input of leaf-distance")
    p.add_argument(
        "--spectrum-method",
        default="mahalanobis",
        choices=["mahalanobis", "knn"],
        help="density of dim-spectrum on log-eigenvalue vectors (default mahalanobis)",
    )
    p.add_argument("--knn-k", type=int, default=50, help="k of the kNN detector (default 50)")
    p.add_argument("--seed", type=int, default=0, help="random_state of the detectors")
    p.add_argument(
        "--protocol",
        action="store_true",
        help="issue 14's protocol (leafscope.experiments.ood_protocol) in one command: train "
        "--seeds N models per setting (converged, partial) under --runs-dir (finished runs "
        "reused, interrupted ones resumed), every baseline and the leaf scores (--leaf-steps, "
        "one anchor; blend tuned only on blurred training images); --json is rewritten after "
        "every model and a rerun skips the models it holds",
    )
    p.add_argument(
        "--max-steps-per-epoch", type=int, default=None, help="with --protocol: cap training"
    )
    p.add_argument(
        "--leaf-scale-points",
        type=int,
        default=200,
        help="with --protocol: held-out training points for the leaf-pixel medians",
    )
    add_data_dir_argument(p)
    add_transform_arguments(p)
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--roc-dir", type=Path, default=None, help="save ROC curves (PNG) here")
    add_device_argument(p)
    add_executor_arguments(p)  # one task per model: --checkpoints / --seeds in parallel
    p.set_defaults(func=run)


def _list(text: str, option: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InputError(f"{option} needs at least one entry (got {text!r})")
    return items


def _train_seeds(args, device) -> list[Path]:
    import torch

    from leafscope.data import train_val_split
    from leafscope.models import build_model_for_input
    from leafscope.training import fit

    arch = args.model or "lenet"
    data = load_data(args, "train", name=args.in_dataset)
    paths = []
    for seed in range(args.seeds):
        tr, va = train_val_split(len(data), 0.1, seed)
        torch.manual_seed(seed)
        model = build_model_for_input(arch, data.input_shape, data.num_classes)
        out = args.runs_dir / f"{args.in_dataset}-{arch}-s{seed}"
        result = fit(
            model,
            (data.images[tr], data.labels[tr]),
            (data.images[va], data.labels[va]),
            epochs=args.train_epochs,
            optimizer="sgd",  # the seeds' settings, explicit: fixed by the published tables
            lr=0.01,
            momentum=0.0,
            batch_size=64,
            seed=seed,
            device=device,
            out_dir=out,
            overwrite=True,
            progress=False,
        )
        print(f"seed {seed}: val accuracy {result.history[-1]['val_accuracy']:.4f}", flush=True)
        paths.append(result.checkpoints[-1])
    return paths


def _options(args) -> dict[str, dict]:
    return {
        "knn": {"k": args.knn_k},
        "dim-spectrum": {"method": args.spectrum_method, "k": args.knn_k},
        "leaf-distance": {"max_steps": args.leaf_steps, "n_anchors": args.leaf_anchors},
    }


def _run_protocol(args: argparse.Namespace, device) -> int:
    from leafscope.experiments.ood_protocol import markdown_table, run_protocol, train_models

    if args.seeds is None or args.seeds < 1:
        raise InputError(f"--protocol needs --seeds N >= 1 (got {args.seeds})")
    if args.executor != "inprocess" or args.scheduler is not None:
        raise InputError(
            f"--protocol runs in this process (got --executor {args.executor}): drop --executor "
            "and --scheduler"
        )
    if args.checkpoint or args.checkpoints:
        raise InputError("--protocol trains its own models: drop --checkpoint / --checkpoints")
    checkpoints = train_models(
        ["converged", "partial"],
        list(range(args.seeds)),
        args.runs_dir,
        in_dataset=args.in_dataset,
        arch=args.model or "lenet",
        data_dir=args.data_dir,
        device=device,
        max_steps_per_epoch=args.max_steps_per_epoch,
    )
    result = run_protocol(
        checkpoints,
        in_dataset=args.in_dataset,
        out_names=None if args.out is None else _list(args.out, "--out"),
        points=args.points,
        fit_points=args.fit_points,
        leaf_steps=args.leaf_steps,
        leaf_scale_points=args.leaf_scale_points,
        data_dir=args.data_dir,
        device=device,
        random_state=args.seed,
        json_path=args.json,
    )
    for note in result.notes:
        print(f"note: {note}")
    for m in result.models:
        acc = m.get("val_accuracy")
        print(f"{m['setting']} seed {m['seed']}: val accuracy {acc}, {m['checkpoint']}")
    print(markdown_table(result.table))
    if args.json:
        print(f"wrote {args.json}")
    if args.roc_dir:
        from leafscope.report.figures.applications import ood_protocol_bars
        from leafscope.report.save import save_figure

        save_figure(ood_protocol_bars(result.table), args.roc_dir / "ood_protocol.png")
        print(f"wrote {args.roc_dir / 'ood_protocol.png'}")
    return 0


def _ood_data(args: argparse.Namespace) -> tuple:
    """The fit set, the in-distribution test images and the out sets (once per worker)."""
    from leafscope.execution import cached

    key = ("ood-data", args.in_dataset, args.out, args.points, args.fit_points,
           str(args.data_dir), args.grey, args.resize)  # fmt: skip

    def load() -> tuple:
        fit_set = load_data(args, "train", limit=args.fit_points, name=args.in_dataset)
        in_set = load_data_like(args, "test", args.in_dataset, fit_set, limit=args.points)
        outs = {  # at the in-set's point shape (noise drawn at it)
            name: load_data_like(args, "test", name, in_set, limit=args.points).images
            for name in _list(args.out, "--out")
        }
        return fit_set, in_set.images, outs

    return cached(key, load)


def _score_model(task: tuple) -> list:
    """Fit and score every detector for one model (a top-level task for any executor)."""
    from leafscope.applications.detectors import make_detector
    from leafscope.applications.ood import evaluate_detectors
    from leafscope.data import check_model_input
    from leafscope.execution import worker_device

    settings, k, path, factory, names, device = task
    args = argparse.Namespace(**settings)
    device = worker_device(device)
    fit_set, x_in, outs = _ood_data(args)
    options = _options(args)
    model = model_from_args(argparse.Namespace(**{**settings, "model": factory}), device, path)
    for name, x in {args.in_dataset: x_in, **outs}.items():
        check_model_input(model, x, source=f"the data ({name})")
    detectors = {
        n: make_detector(n, model, random_state=args.seed, **options.get(n, {})).fit(
            fit_set.images, fit_set.labels if (fit_set.labels >= 0).all() else None
        )
        for n in names
    }
    return evaluate_detectors(detectors, x_in, outs, seed=k)


def run(args: argparse.Namespace) -> int:
    """Fit and score every detector for every model; print and write the table; 0 on success."""
    from leafscope.applications.detectors import DETECTORS
    from leafscope.applications.ood import METRICS, aggregate_seeds

    device = resolve_device(args.device)
    if args.protocol:
        return _run_protocol(args, device)
    if args.out is None:
        args.out = "fashion-mnist,noise"
    check_executor_args(args)
    # With --seeds, --model names the architecture to train, not a source of its own.
    factory = None if args.seeds is not None else args.model
    sources = [args.checkpoint, args.checkpoints, args.seeds, factory]
    if sum(v is not None for v in sources) != 1:
        raise InputError(
            "pass one model source: --checkpoint FILE, --checkpoints A,B, --model MODULE:CALLABLE "
            "or --seeds N (with --model NAME for its architecture)"
        )
    names = list(DETECTORS) if args.detectors == "all" else _list(args.detectors, "--detectors")
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise InputError(f"unknown detectors {unknown}: use some of {', '.join(DETECTORS)}")
    if args.points < 2 or args.fit_points < 2:
        raise InputError(
            f"--points and --fit-points must be >= 2 ({args.points}, {args.fit_points})"
        )
    if args.seeds is not None:
        if args.seeds < 1:
            raise InputError(f"--seeds must be >= 1 (got {args.seeds})")
        checkpoints = _train_seeds(args, device)
    elif args.checkpoints:
        checkpoints = [Path(p) for p in _list(args.checkpoints, "--checkpoints")]
    else:
        checkpoints = [args.checkpoint]  # None with --model MODULE:CALLABLE
    outs = _list(args.out, "--out")
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    tasks = [(settings, k, path, factory, names, str(device)) for k, path in enumerate(checkpoints)]
    with executor_from_args(args, device) as executor:
        per_model = executor.map(_score_model, tasks)
    all_results = [r for results in per_model for r in results]
    for (_, k, *_), results in zip(tasks, per_model, strict=True):
        for r in results:
            print(
                f"model {k} {r.detector:>14} vs {r.out_dataset}: AUROC {r.auroc:.4f} "
                f"FPR95 {r.fpr95:.4f} AUPR-in {r.aupr_in:.4f} AUPR-out {r.aupr_out:.4f}",
                flush=True,
            )
    options = _options(args)
    table = aggregate_seeds(all_results)
    print("| detector | out set | AUROC | FPR@95TPR | AUPR-in | AUPR-out |")
    print("|---|---|---|---|---|---|")
    for r in table:
        cells = " | ".join(f"{r[m]:.4f} ± {r[m + '_std']:.4f}" for m in METRICS)
        print(f"| {r['detector']} | {r['out_dataset']} | {cells} |")
    if args.json:
        payload = {
            "results": table,
            "per_model": [r.to_json() for r in all_results],
            "settings": {
                "checkpoints": [
                    str(p) if p is not None else model_source(args) for p in checkpoints
                ],
                "in": args.in_dataset,
                "out": list(outs),
                "points": args.points,
                "fit_points": args.fit_points,
                "detector_options": options,
                "random_state": args.seed,
                "std": "population std over models (ddof=0)",
            },
        }
        finish_json(args.json, payload)
    if args.roc_dir:
        from leafscope.report.figures.applications import roc_curves
        from leafscope.report.save import save_figure

        for name in outs:
            save_figure(roc_curves(all_results, name), args.roc_dir / f"roc_{name}.png")
        print(f"wrote ROC curves to {args.roc_dir}")
    return 0
