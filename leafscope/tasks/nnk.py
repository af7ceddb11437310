"""``nnk``: NNK graph geometry (manifold graph metrics) of a model's layers, and the DeepNNK
leave-one-out error, for one model or every checkpoint of a run.

Units: one per (checkpoint, layer): the MGMs (neighbours, polytope diameter, local dimension,
orientation) of the NNK graph of that layer's features on ``points`` points of the data set (a
seeded sample stratified by label); and, with ``loo``, one per checkpoint: the leave-one-out
error of the NNK interpolation classifier on the features of ``loo_layer`` (default: the input
of the last ``nn.Linear``) and the error on ``test_points`` points of the test split (sampled
likewise). Layers are named as in the model (the user's own names: ``conv1``, ``fc1``). Across
three or more checkpoints the summary holds the Pearson correlation of LOO and test error.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leafscope.errors import InputError
from leafscope.tasks import _nnk
from leafscope.tasks.base import Context, Params, Task, param, register_task, split_roles

__all__ = ["NNKParams", "NNKTask", "rows_to_geometry"]

METRICS = ("n_neighbors", "diameter", "local_dim", "orientation")
KERNELS = ("cosine", "gaussian")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NNKParams(Params):
    """Parameters of :class:`NNKTask`.

    Attributes:
        layers: layer names of the model (as the model names them, e.g. ``("conv1", "fc1")``).
        run: a run folder: every epoch checkpoint of it is measured (with a main model, that
            model's architecture with each checkpoint's weights; without, each checkpoint as
            leafscope saved it). None: the main model only.
        include_initial, step_checkpoints: with ``run``: also epoch 0 / the step checkpoints.
        points: N points of the data set (a seeded sample stratified by label) form the
            graph's nodes.
        test_points: N points of the test split (sampled likewise) give the test error
            (capped at its size).
        k: kNN candidates per node (capped at ``points - 1``); kernel: ``cosine`` or
            ``gaussian``.
        orientation: compute the orientation MGM (radians; the costly one on wide layers).
        loo: per checkpoint the DeepNNK LOO error (in [0, 1]) and the test error.
        loo_layer: the layer of the LOO classifier (None: the input of the last nn.Linear).
    """

    layers: tuple[str, ...] = param(
        (), help="layer names of the model, comma-separated, e.g. conv1,fc1", metavar="NAME,..."
    )
    run: str | None = param(
        None,
        help="a run folder: measure each of its epoch checkpoints (with --model or a "
        "TorchScript --checkpoint, their architecture gets each checkpoint's weights)",
        metavar="DIR",
    )
    include_initial: bool = param(False, help="with --run: also the epoch-0 checkpoint")
    step_checkpoints: bool = param(
        False, help="with --run: also its step_NNNNNNNN.pt checkpoints (--checkpoint-every-steps)"
    )
    points: int = param(
        1000, help="N points of the data set (a seeded sample stratified by label) are the nodes"
    )
    test_points: int = param(
        10000, help="N test points (sampled likewise) give the test error (capped at its size)"
    )
    k: int = param(15, help="kNN candidates per node (capped at points - 1)")
    kernel: str = param("cosine", help="NNK kernel", choices=KERNELS)
    orientation: bool = param(True, help="skip the orientation MGM (the slowest on wide layers)")
    loo: bool = param(True, help="skip the DeepNNK leave-one-out error and the test error")
    loo_layer: str | None = param(
        None, help="layer of the LOO classifier (default: the input of the last nn.Linear)"
    )

    def validate(self) -> None:
        object.__setattr__(self, "layers", _nnk.split_names(self.layers))
        if self.points < 3:
            raise InputError(f"`points` must be >= 3 for an NNK graph (got {self.points})")
        for name in ("test_points", "k"):
            if getattr(self, name) < 1:
                raise InputError(f"`{name}` must be >= 1 (got {getattr(self, name)})")
        if self.kernel not in KERNELS:
            raise InputError(f"`kernel` must be one of {', '.join(KERNELS)} (got {self.kernel!r})")
        if self.run is None and (self.include_initial or self.step_checkpoints):
            raise InputError(
                "`include_initial` and `step_checkpoints` select checkpoints of a `run`: name one"
            )


@register_task
class NNKTask(Task):
    """Manifold graph metrics per (checkpoint, layer) and DeepNNK LOO vs test error."""

    name = "nnk"
    Params = NNKParams
    summary = "NNK graph geometry (MGMs) of a model's layers, per checkpoint of a run; DeepNNK LOO"
    description = (
        "For the model (or every epoch checkpoint of --run): manifold graph metrics (NNK "
        "neighbours, polytope diameter, local dimension, orientation) of the NNK graph of each "
        "layer's features on --points points (one unit per checkpoint and layer), "
        "the DeepNNK leave-one-out error on the last hidden layer and the test error (one "
        "unit per checkpoint), and their Pearson correlation across checkpoints. Layers are "
        "named as in your model. The figures' data go to OUT/_files/nnk.json."
    )
    per_point = False
    default_split = "train"
    columns = (
        "unit",
        "model",
        "epoch",
        "step",
        "layer",
        "kind",
        "n_neighbors_mean",
        "diameter_mean",
        "local_dim_mean",
        "orientation_mean",
        "loo_error",
        "test_error",
        "result",
    )

    # --- the job ----------------------------------------------------------------------------

    def _checkpoints(self) -> list[Any]:
        p: NNKParams = self.params
        return _nnk.run_checkpoints(
            p.run, include_initial=p.include_initial, step_checkpoints=p.step_checkpoints
        )

    def extra_models(self, model: Any) -> dict[str, Any]:
        _nnk.require_layers(self.params.layers)
        if self.params.run is None:
            return {}
        return {i.path.stem: _nnk.derived_model(model, i.path) for i in self._checkpoints()}

    def extra_data(self, data: Any) -> dict[str, Any]:
        if not self.params.loo:
            return {}
        purpose = "the leave-one-out estimate is compared with the error on the test split"
        return split_roles(data, purpose, test="test")

    def units(self, context: Context) -> list[dict[str, Any]]:
        p: NNKParams = self.params
        _nnk.require_layers(p.layers)
        if p.run is None:
            models = [
                {"model": _nnk.MAIN, "checkpoint": None, "epoch": None, "step": None, "val": None}
            ]
        else:
            models = [
                {
                    "model": i.path.stem,
                    "checkpoint": str(Path(i.path).resolve()),
                    "epoch": int(i.epoch),
                    "step": int(i.step),
                    "val": i.val_accuracy,
                }
                for i in self._checkpoints()
            ]
        units = []
        for record in models:
            units += [{**record, "kind": "mgm", "layer": layer} for layer in p.layers]
            if p.loo:
                units.append({**record, "kind": "loo", "layer": p.loo_layer})
        return units

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.nnk.geometry import last_hidden_layer

        p: NNKParams = self.params
        _, y = _nnk.sample_points(context, p.points)
        model = context.model(context.units[0]["model"])
        _nnk.check_layers(model, p.layers)
        meta: dict[str, Any] = {"points": p.points, "loo_layer": None, "test_points": 0}
        if p.loo:
            if bool((y < 0).any()):
                raise InputError(
                    "the data are unlabelled: the DeepNNK leave-one-out error needs labels "
                    "(turn `loo` off, or pass a labelled set)"
                )
            if p.loo_layer is not None:
                _nnk.check_layers(model, [p.loo_layer])
            meta["loo_layer"] = p.loo_layer or last_hidden_layer(model)
            meta["test_points"] = min(p.test_points, len(context.data("test")))
        return meta

    # --- the rows ---------------------------------------------------------------------------

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.models.features import layer_features
        from leafscope.nnk.geometry import loo_error, mgm_summary
        from leafscope.training import evaluate

        p: NNKParams = self.params
        device = context.device
        x, y = _nnk.sample_points(context, int(context.meta["points"]))
        test = None
        rows: dict[str, list] = {c: [] for c in self.columns}
        for pos in positions:
            unit = context.units[pos]
            model = context.model(unit["model"])
            summary: dict[str, Any] = {}
            loo = test_error = None
            if unit["kind"] == "mgm":
                layer = unit["layer"]
                feats = layer_features(model, x, [layer], device=device)[layer]
                summary = mgm_summary(feats, p.k, p.kernel, p.orientation, device)
            else:
                layer = str(context.meta["loo_layer"])
                feats = layer_features(model, x, [layer], device=device)[layer]
                loo = loo_error(feats, y, p.k, p.kernel, device)
                if test is None:
                    test = _nnk.sample_points(
                        context, int(context.meta["test_points"]), "test", field="test_points"
                    )
                test_error = 1.0 - float(evaluate(model, test, device=device)[1])
            rows["unit"].append(pos)
            rows["model"].append(unit["model"])
            rows["epoch"].append(-1 if unit["epoch"] is None else int(unit["epoch"]))
            rows["step"].append(-1 if unit["step"] is None else int(unit["step"]))
            rows["layer"].append(layer)
            rows["kind"].append(unit["kind"])
            for metric in METRICS:
                value = (summary.get(metric) or {}).get("mean")
                rows[f"{metric}_mean"].append(_nnk.nan_if_none(value))
            rows["loo_error"].append(_nnk.nan_if_none(loo))
            rows["test_error"].append(_nnk.nan_if_none(test_error))
            rows["result"].append(_nnk.json_cell(summary))
        out = {k: np.asarray(v) for k, v in rows.items()}
        out["unit"] = out["unit"].astype(np.int64)
        out["epoch"] = out["epoch"].astype(np.int64)
        out["step"] = out["step"].astype(np.int64)
        return out

    # --- the results ------------------------------------------------------------------------

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        geometry = rows_to_geometry(rows, context, self.params)
        means = {
            layer: {m: [e.layers[layer].get(m, {}).get("mean") for e in geometry.epochs]
                    for m in METRICS if any(e.layers[layer].get(m) for e in geometry.epochs)}
            for layer in geometry.layers
        }  # fmt: skip
        return {
            "checkpoints": len(geometry.epochs),
            "layers": list(geometry.layers),
            "points": geometry.n_points,
            "k": geometry.k,
            "kernel": geometry.kernel,
            "epochs": [e.epoch for e in geometry.epochs],
            "steps": [e.step for e in geometry.epochs],
            "loo_layer": geometry.loo_layer,
            "loo_error": geometry.loo_errors,
            "test_error": geometry.test_errors,
            "pearson_loo_vs_test": geometry.pearson,
            "mgm_means": means,
        }

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        return rows_to_geometry(rows, context, self.params).to_json()

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        line = f"nnk: {summary['checkpoints']} checkpoint(s), layers {','.join(summary['layers'])}"
        if summary["loo_layer"] is not None:
            r = summary["pearson_loo_vs_test"]
            line += (
                f", LOO layer {summary['loo_layer']}; last LOO error "
                f"{summary['loo_error'][-1]:.4f}, test error {summary['test_error'][-1]:.4f}; "
                "Pearson r(LOO, test) "
                + (f"{r:.3f}" if r is not None else "n/a (fewer than 3 checkpoints)")
            )
        lines = [line]
        for layer, metrics in summary["mgm_means"].items():
            text = ", ".join(
                f"{m} {v[-1]:.4g}" for m, v in metrics.items() if v and v[-1] is not None
            )
            lines.append(f"  {layer}: mean {text}")
        return lines

    def write_files(
        self,
        folder: Any,
        rows: Mapping[str, np.ndarray],
        summary: Mapping[str, Any],
        context: Context,
    ) -> list[Any]:
        """``nnk.json``: the geometry of every checkpoint (what the report's NNK figures draw:
        :func:`leafscope.report.results.write_result_figures`)."""
        from leafscope.io import write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        geometry = rows_to_geometry(rows, context, self.params)
        return [write_json(folder / "nnk.json", geometry.to_json())]


def rows_to_geometry(rows: Mapping[str, np.ndarray], context: Context, params: NNKParams) -> Any:
    """The :class:`~leafscope.nnk.geometry.RunGeometry` of the rows (checkpoints in unit
    order)."""
    from leafscope.nnk.geometry import EpochGeometry, RunGeometry

    meta = context.meta
    geometry = RunGeometry(
        run_dir=str(params.run) if params.run is not None else _nnk.MAIN,
        layers=list(params.layers),
        loo_layer=meta.get("loo_layer"),
        k=params.k,
        kernel=params.kernel,
        n_points=int(meta.get("points", params.points)),
    )
    records: dict[str, Any] = {}
    for i in np.argsort(np.asarray(rows["unit"]), kind="stable"):
        unit = context.units[int(rows["unit"][i])]
        role = unit["model"]
        if role not in records:
            records[role] = EpochGeometry(
                epoch=-1 if unit["epoch"] is None else int(unit["epoch"]),
                step=-1 if unit["step"] is None else int(unit["step"]),
                checkpoint=unit["checkpoint"] or role,
                layers={},
                loo_error=None,
                val_accuracy=unit.get("val"),
            )
            geometry.epochs.append(records[role])
        record = records[role]
        if unit["kind"] == "mgm":
            record.layers[unit["layer"]] = json.loads(str(rows["result"][i]))
        else:
            record.loo_error = _nnk.none_if_nan(rows["loo_error"][i])
            record.test_error = _nnk.none_if_nan(rows["test_error"][i])
    return geometry
