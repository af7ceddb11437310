"""``leafscope invariance``: NNK polytope diameter of rotated inputs, layer by layer."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from leafscope.cli import common
from leafscope.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "invariance",
        help="rotation invariance of each layer: NNK polytope diameter of rotated inputs",
        description="For each model and layer: the L2-normalised features of every input and of "
        "its rotations; the NNK polytope of the input among its rotations and its diameter "
        "(0 = the layer maps all rotations to one point). Compare models trained with and "
        "without rotation augmentation (leafscope train --augment-rotation DEG).",
    )
    p.add_argument(
        "--models",
        required=True,
        help="comma-separated LABEL=PATH (run folder or .pt), e.g. plain=runs/a,rotated=runs/b",
    )
    p.add_argument("--layers", required=True, help="comma-separated layer names, e.g. conv1,fc1")
    p.add_argument(
        "--angles",
        default="-45,-30,-15,15,30,45",
        help="rotation angles in degrees (default -45,-30,-15,15,30,45)",
    )
    p.add_argument("--points", type=int, default=500, help="first N test points (default 500)")
    common.add_data_arguments(p)
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--figure", type=Path, default=None, help="write a PNG figure here")
    common.add_device_argument(p)
    p.set_defaults(func=run)


def _models(text: str) -> list[tuple[str, str]]:
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise InputError(f"--models entries are LABEL=PATH, got {item!r}")
        out.append((label, path))
    if not out:
        raise InputError("--models is empty: pass LABEL=PATH entries")
    return out


def _angles(text: str) -> list[float]:
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError as exc:
        raise InputError(f"--angles must be comma-separated numbers, got {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    from leafscope.data import rotate
    from leafscope.nnk.invariance import rotation_invariance
    from leafscope.report.figures.nnk import plot_invariance
    from leafscope.report.save import save_figure
    from leafscope.training import evaluate

    common.check_minimum(args, 1, "points")
    device = common.resolve_device(args.device)
    angles = _angles(args.angles)
    specs = _models(args.models)
    models = {label: common.load_model_spec(path, device) for label, path in specs}
    layers = common.parse_layers(args.layers, next(iter(models.values())))
    data = common.load_data_for(next(iter(models.values())), args, "test", limit=args.points)
    if not data.is_image:
        raise InputError(
            f"invariance rotates images, but {args.dataset} holds vectors of shape "
            f"{data.input_shape}: use an image data set"
        )
    results, accuracy = {}, {}
    for label, model in models.items():
        with torch.no_grad():
            results[label] = rotation_invariance(model, data.images, layers, angles, device=device)
        accuracy[label] = {
            str(a): evaluate(model, (rotate(data.images, a), data.labels), device=device)[1]
            for a in [0.0, *angles]
        }
        row = ", ".join(f"{n} {g.diameter.mean():.3f}" for n, g in results[label].items())
        acc = sum(list(accuracy[label].values())[1:]) / len(angles)
        print(
            f"{label}: accuracy {accuracy[label]['0.0']:.4f} upright, {acc:.4f} rotated; "
            f"mean NNK polytope diameter of rotations: {row}"
        )
    payload = {
        "models": dict(specs),
        "angles": angles,
        "dataset": args.dataset,
        "points": len(data.images),
        "accuracy": accuracy,
        "results": {
            label: {name: g.to_json() for name, g in res.items()} for label, res in results.items()
        },
    }
    if args.figure is not None:
        save_figure(plot_invariance(results), args.figure, dpi=110)
        payload["figure"] = str(args.figure)
    common.finish_json(args.json, payload)
    return 0
