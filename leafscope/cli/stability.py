"""``leafscope stability``: are the NNK graphs of the same points stable across training runs?"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from leafscope.cli import common
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stability",
        help="edge overlap and MGM distances of NNK graphs across runs (seeds, data subsets)",
        description="Build the NNK graph of the same points under each run's model, layer by "
        "layer, and compare every pair of runs: Jaccard overlap of the NNK edges (and of the "
        "kNN edges they were selected from, and the chance level), and Wasserstein / KS "
        "distances between the per-node distributions of the manifold graph metrics.",
    )
    p.add_argument(
        "--runs", required=True, help="comma-separated run folders (newest checkpoint) or .pt files"
    )
    p.add_argument("--layers", required=True, help="comma-separated layer names, e.g. conv1,fc1")
    p.add_argument("--points", type=int, default=1000, help="first N points (default 1000)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="(default test)")
    p.add_argument("--k", type=int, default=15, help="kNN candidates per node (default 15)")
    p.add_argument("--kernel", default="cosine", choices=["cosine", "gaussian"])
    p.add_argument("--orientation", action="store_true", help="also compare orientation (slow)")
    common.add_data_arguments(p)
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--figure", type=Path, default=None, help="write a PNG figure here")
    common.add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leafscope.data import check_model_input
    from leafscope.nnk.stability import geometric_stability
    from leafscope.report.figures.nnk import plot_stability
    from leafscope.report.save import save_figure

    common.check_minimum(args, 3, "points")
    common.check_minimum(args, 1, "k")
    device = common.resolve_device(args.device)
    specs = [s.strip() for s in args.runs.split(",") if s.strip()]
    if len(specs) < 2:
        raise InputError(f"--runs needs at least 2 runs to compare, got {specs}")
    models = [common.load_model_spec(s, device) for s in specs]
    layers = common.parse_layers(args.layers, models[0])
    data = common.load_data_for(models[0], args, args.split, limit=args.points)
    for spec, model in zip(specs[1:], models[1:], strict=True):
        check_model_input(model, data, source=f"the data ({args.dataset}) for {spec}")
    with torch.no_grad():
        result = geometric_stability(
            models,
            data.images,
            layers,
            k=args.k,
            kernel=args.kernel,
            orientation=args.orientation,
            device=device,
        )
    for name, layer in result.items():
        s = layer.summary()
        print(
            f"{name}: NNK edge Jaccard {s['nnk_jaccard']:.3f} (kNN {s['knn_jaccard']:.3f}, "
            f"chance {s['nnk_chance']:.4f}); W1 neighbours {s['n_neighbors_wasserstein']:.3f}, "
            f"diameter {s['diameter_wasserstein']:.4f}, local dim {s['local_dim_wasserstein']:.3f}"
        )
    payload = {
        "runs": specs,
        "dataset": args.dataset,
        "split": args.split,
        "points": len(data.images),
        "k": args.k,
        "kernel": args.kernel,
        "layers": {name: layer.to_json() for name, layer in result.items()},
    }
    if args.figure is not None:
        save_figure(plot_stability(result), args.figure, dpi=110)
        payload["figure"] = str(args.figure)
    common.finish_json(args.json, payload)
    return 0
