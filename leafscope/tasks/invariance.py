"""``invariance``: rotation invariance of each layer, measured by the NNK polytope of an input's
rotations.

Units: one per (model, layer): for each of ``points`` images (a seeded sample stratified by
label), the L2-normalised
features of the image and of its rotations by ``angles`` degrees; the NNK polytope of the image
among its rotations and its diameter (0 = the layer maps all rotations to one point; at most 2)
and spread; one per model: its accuracy on the upright and the rotated images; and one for the
images themselves (layer ``input``, the reference, the same for every model). Models: the main
one and those of ``models`` (e.g. trained with and without ``--augment-rotation``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from leafscope.errors import InputError
from leafscope.tasks import _nnk
from leafscope.tasks.base import Context, Params, Task, param, register_task

__all__ = ["InvarianceParams", "InvarianceTask", "rows_to_results"]

INPUT = "input"
DEFAULT_ANGLES = (-45.0, -30.0, -15.0, 15.0, 30.0, 45.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class InvarianceParams(Params):
    """Parameters of :class:`InvarianceTask`.

    Attributes:
        layers: layer names of the models (as the models name them).
        models: further models, ``LABEL=PATH`` or ``PATH`` (as ``runs`` of
            :class:`~leafscope.tasks.stability.StabilityParams`: run folders, checkpoints,
            TorchScript or, with a user main model, weight files).
        angles: rotation angles in degrees (at least 2, none a multiple of 360).
        points: N images of the data set (a seeded sample stratified by label).
    """

    layers: tuple[str, ...] = param(
        (), help="layer names of the models, comma-separated, e.g. conv1,fc1", metavar="NAME,..."
    )
    models: tuple[str, ...] = param(
        (),
        help="models measured besides --checkpoint/--model (or alone): run folders, "
        "checkpoints, TorchScript or weight files, each LABEL=PATH or PATH",
        metavar="LABEL=PATH,...",
    )
    angles: tuple[float, ...] = param(
        DEFAULT_ANGLES, help="rotation angles in degrees", metavar="DEG,..."
    )
    points: int = param(500, help="N images of the data set (a seeded sample stratified by label)")

    def validate(self) -> None:
        object.__setattr__(self, "layers", _nnk.split_names(self.layers))
        object.__setattr__(self, "models", tuple(r.strip() for r in self.models if r.strip()))
        object.__setattr__(self, "angles", tuple(float(a) for a in self.angles))
        if len(self.angles) < 2 or any(a % 360 == 0 for a in self.angles):
            raise InputError(
                f"`angles` must hold at least 2 angles in degrees, none a multiple of 360 (got "
                f"{list(self.angles)})"
            )
        if self.points < 1:
            raise InputError(f"`points` must be >= 1 (got {self.points})")


@register_task
class InvarianceTask(Task):
    """NNK polytope diameter of rotated inputs per (model, layer), and rotated accuracy."""

    name = "invariance"
    payload_file = "invariance.json"  # per model and layer the diameters: its figure
    Params = InvarianceParams
    summary = "rotation invariance per layer: NNK polytope diameter of rotated inputs"
    description = (
        "For each model and layer (one unit each): the L2-normalised features of every image "
        "and of its rotations by --angles; the NNK polytope of the image among its rotations "
        "and its diameter (0 = the layer maps all rotations to one point). Also each model's "
        "accuracy on upright and rotated images, and the images' own polytopes (layer "
        "'input'). Compare models trained with and without rotation augmentation (leafscope "
        "train --augment-rotation DEG): --checkpoint A --models rotated=B, or --models "
        "plain=A,rotated=B. The figure's data go to OUT/_files/invariance.json."
    )
    per_point = False
    images_only = True
    columns = (
        "unit",
        "model",
        "layer",
        "kind",
        "diameter_mean",
        "diameter_median",
        "spread_mean",
        "n_selected_mean",
        "diameter",
        "spread",
        "n_selected",
        "accuracy",
    )

    def extra_models(self, model: Any) -> dict[str, Any]:
        _nnk.require_layers(self.params.layers)
        if model is None and not self.params.models:
            raise InputError("invariance needs a model: give a checkpoint, a factory or `models`")
        return _nnk.run_models(model, self.params.models)

    def units(self, context: Context) -> list[dict[str, Any]]:
        _nnk.require_layers(self.params.layers)
        roles = _nnk.model_roles(context, self.params.models)
        units: list[dict[str, Any]] = [
            {"kind": "geometry", "model": None, "label": INPUT, "layer": INPUT}
        ]
        for role, label in roles:
            units.append({"kind": "accuracy", "model": role, "label": label, "layer": None})
            units += [
                {"kind": "geometry", "model": role, "label": label, "layer": layer}
                for layer in self.params.layers
            ]
        return units

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.data import check_model_input

        p: InvarianceParams = self.params
        data = context.data()
        if not data.is_image:
            raise InputError(
                f"invariance rotates images, but {data.name} holds vectors of shape "
                f"{tuple(data.input_shape)}: use an image data set"
            )
        _nnk.sample_points(context, p.points)
        models = []
        for unit in context.units:
            if unit["kind"] == "accuracy":
                model = context.model(unit["model"])
                _nnk.check_layers(model, p.layers)
                check_model_input(model, data.dataset([0]), source=f"the data for {unit['label']}")
                models.append(unit["label"])
        return {"models": models}

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.data import rotate
        from leafscope.nnk.invariance import rotation_invariance
        from leafscope.training import evaluate

        p: InvarianceParams = self.params
        device = context.device
        x, y = _nnk.sample_points(context, p.points)
        n, width = x.shape[0], 1 + len(p.angles)
        rows: dict[str, list] = {c: [] for c in self.columns}
        for pos in positions:
            unit = context.units[pos]
            geometry = None
            accuracy = np.full(width, np.nan)
            if unit["kind"] == "geometry" and unit["model"] is None:
                geometry = rotation_invariance(None, x, [], p.angles, device=device)[INPUT]
            elif unit["kind"] == "geometry":
                model = context.model(unit["model"])
                geometry = rotation_invariance(
                    model, x, [unit["layer"]], p.angles, include_input=False, device=device
                )[unit["layer"]]
            elif bool((y >= 0).all()):
                model = context.model(unit["model"])
                accuracy = np.array(
                    [evaluate(model, (rotate(x, a), y), device=device)[1]
                     for a in (0.0, *p.angles)],
                    dtype=np.float64,
                )  # fmt: skip
            nan = np.full(n, np.nan)
            rows["unit"].append(pos)
            rows["model"].append(unit["label"])
            rows["layer"].append(unit["layer"] or "")
            rows["kind"].append(unit["kind"])
            if geometry is not None:
                s = geometry.summary()
                rows["diameter_mean"].append(s["diameter_mean"])
                rows["diameter_median"].append(s["diameter_median"])
                rows["spread_mean"].append(s["spread_mean"])
                rows["n_selected_mean"].append(s["n_selected_mean"])
                rows["diameter"].append(np.asarray(geometry.diameter, dtype=np.float64))
                rows["spread"].append(np.asarray(geometry.spread, dtype=np.float64))
                rows["n_selected"].append(np.asarray(geometry.n_selected, dtype=np.float64))
            else:
                for name in ("diameter_mean", "diameter_median", "spread_mean", "n_selected_mean"):
                    rows[name].append(np.nan)
                for name in ("diameter", "spread", "n_selected"):
                    rows[name].append(nan)
            rows["accuracy"].append(accuracy)
        out = {k: np.asarray(v) for k, v in rows.items()}
        out["unit"] = out["unit"].astype(np.int64)
        return out

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        results, accuracy = rows_to_results(rows, context, self.params)
        return {
            "models": list(results),
            "angles": list(self.params.angles),
            "points": self.params.points,
            "diameter_mean": {
                label: {name: float(g.diameter.mean()) for name, g in layers.items()}
                for label, layers in results.items()
            },
            "accuracy": accuracy,
        }

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        results, accuracy = rows_to_results(rows, context, self.params)
        return {
            "angles": list(self.params.angles),
            "points": self.params.points,
            "accuracy": accuracy,
            "results": {
                label: {name: g.to_json() for name, g in layers.items()}
                for label, layers in results.items()
            },
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = []
        for label, layers in summary["diameter_mean"].items():
            acc = summary["accuracy"].get(label) or {}
            values = list(acc.values())
            head = f"{label}: "
            if values and values[0] is not None:
                rotated = [v for v in values[1:] if v is not None]
                head += f"accuracy {values[0]:.4f} upright, {np.mean(rotated):.4f} rotated; "
            row = ", ".join(f"{n} {d:.3f}" for n, d in layers.items())
            lines.append(head + f"mean NNK polytope diameter of rotations: {row}")
        return lines


def rows_to_results(
    rows: Mapping[str, np.ndarray], context: Context, params: InvarianceParams
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float | None]]]:
    """``({model label: {"input": geometry, layer: geometry}}, {model label: {angle:
    accuracy}})`` of the rows (geometries as
    :class:`~leafscope.nnk.invariance.AugmentationGeometry`; angles as text, ``"0.0"`` upright
    first; accuracy None for unlabelled data)."""
    from leafscope.nnk.invariance import AugmentationGeometry

    order = np.argsort(np.asarray(rows["unit"]), kind="stable")
    reference = None
    results: dict[str, dict[str, Any]] = {}
    accuracy: dict[str, dict[str, float | None]] = {}
    for i in order:
        unit = context.units[int(rows["unit"][i])]
        if unit["kind"] == "accuracy":
            angles = [str(float(a)) for a in (0.0, *params.angles)]
            values = [_nnk.none_if_nan(v) for v in np.asarray(rows["accuracy"][i])]
            accuracy[unit["label"]] = dict(zip(angles, values, strict=True))
            results.setdefault(unit["label"], {})
            continue
        geometry = AugmentationGeometry(
            unit["layer"],
            np.asarray(rows["diameter"][i], dtype=np.float64),
            np.asarray(rows["spread"][i], dtype=np.float64),
            np.asarray(rows["n_selected"][i]).astype(np.int64),
        )
        if unit["model"] is None:
            reference = geometry
        else:
            results.setdefault(unit["label"], {})[unit["layer"]] = geometry
    if reference is not None:
        results = {label: {INPUT: reference, **layers} for label, layers in results.items()}
    return results, accuracy
