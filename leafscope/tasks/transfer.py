"""``transfer``: the DIM spectrum of one model across data sets and last-layer transfer, one
unit per data set.

The main data set is the model's own training set: its ``test`` split gives the reference
spectrum (one more unit), from which each set's *training distance* is measured. For each set
of ``datasets``: the spectrum of G at a seeded sample of ``points`` points of its ``train``
split (medians of log10 λ_1, log10 λ_{C-1}, Δ, log10 tr G); for a labelled set the accuracy
after retraining only the last layer on ``transfer_train`` of its training points, scored on
``transfer_val`` of its ``test`` points; the summary adds the pairwise spectral distances
(:func:`leafscope.applications.transfer.spectral_distance`, decades).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from leafscope.dtypes import DTYPES
from leafscope.errors import InputError
from leafscope.tasks.base import (
    Context,
    Params,
    Task,
    param,
    register_task,
    split_roles,
    take_sample,
)
from leafscope.tasks.ood import _progress

__all__ = ["TransferParams", "TransferTask"]

ROW_FIELDS = (
    "median_log10_highest",
    "median_log10_lowest",
    "median_delta",
    "median_log10_trace",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransferParams(Params):
    """Parameters of :class:`TransferTask`.

    Attributes:
        datasets: the compared sets (built-in names or paths), one unit each.
        points: points per spectrum (a seeded sample of the set's train split, stratified by
            label; fewer when the set is smaller).
        transfer_train: training points of the new last layer.
        transfer_val: test points scoring it.
        dtype: compute dtype of G.
        seed: seed of the point samples.
    """

    datasets: tuple[str, ...] = param(
        ("mnist", "fashion-mnist", "digits", "noise"),
        help="compared data sets, comma-separated: names or paths (.npz, folders, ...)",
        metavar="SET,SET",
    )
    points: int = param(250, help="points per spectrum", metavar="N")
    transfer_train: int = param(5000, help="training points of the new last layer", metavar="N")
    transfer_val: int = param(1000, help="test points scoring the new last layer", metavar="N")
    dtype: str = param("float64", help="compute dtype of G", choices=tuple(DTYPES))
    seed: int = param(0, help="seed of the point samples", metavar="SEED")

    def validate(self) -> None:
        if not self.datasets:
            raise InputError("datasets needs at least one name, e.g. mnist,noise")
        repeated = sorted({n for n in self.datasets if self.datasets.count(n) > 1})
        if repeated:
            raise InputError(f"datasets lists {', '.join(repeated)} more than once")
        for name in ("points", "transfer_train", "transfer_val"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")


def _set_specs(main: Any, name: str) -> tuple[Any, Any]:
    """The train and test splits of ``name`` with the main set's options (the holdout fraction
    only for a set without a split of its own)."""
    spec = main.replace(name=name, holdout=None, input_shape=None)
    if not spec.has_split():
        spec = spec.replace(holdout=main.holdout)
    return spec.replace(split="train"), spec.replace(split="test")


@register_task
class TransferTask(Task):
    """DIM spectra across data sets and last-layer transfer accuracy."""

    name = "transfer"
    payload_file = "spectra.json"  # per data set the log10 eigenvalues: its figure
    Params = TransferParams
    default_split = "test"
    per_point = False
    summary = "DIM spectrum table across data sets and last-layer transfer accuracy"
    description = (
        "For a trained model and its training set (--dataset): medians of log10 highest/lowest "
        "nonzero eigenvalue, their difference and log10 trace of G at a seeded sample of --points "
        "training points of each of --datasets; accuracy after retraining only the last linear "
        "layer on each labelled set (--transfer-train points, scored on --transfer-val test "
        "points); Wasserstein distances between the sets' log-spectra and to held-out test "
        "points of the training set. A set without a train/test split needs --holdout F."
    )
    columns = (
        "unit",
        "dataset",
        "kind",
        *ROW_FIELDS,
        "transfer_accuracy",
        "points",
        "transfer_train_points",
        "transfer_val_points",
        "log10_eigenvalues",
    )

    def extra_data(self, data: Any) -> dict[str, Any]:
        specs = split_roles(data, "transfer compares the test splits", reference="test")
        for i, name in enumerate(self.params.datasets, start=1):
            specs[f"set{i}:train"], specs[f"set{i}:test"] = _set_specs(data, name)
        return specs

    def units(self, context: Context) -> list[Any]:
        units: list[dict] = [
            {"kind": "set", "dataset": name, "role": f"set{i}"}
            for i, name in enumerate(self.params.datasets, start=1)
        ]
        return units + [{"kind": "reference", "dataset": context.data("reference").name}]

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.data import check_model_input
        from leafscope.information.spectrum import point_spectra

        p: TransferParams = self.params
        model = context.model()
        rows: dict[str, list] = {c: [] for c in self.columns}
        for pos in positions:
            unit = context.units[pos]
            role = "reference" if unit["kind"] == "reference" else f"{unit['role']}:train"
            points = context.data(role)
            x, _ = take_sample(points, p.points, p.seed)
            check_model_input(model, x[:1], source=f"the data ({unit['dataset']})")
            spectra = point_spectra(
                model, x, dtype=DTYPES[p.dtype], device=context.device, progress=_progress(context)
            )
            accuracy, n_tr, n_va = None, 0, 0
            if unit["kind"] == "set":
                accuracy, n_tr, n_va = self._transfer(model, points, context, unit["role"])
            self._append(rows, pos, unit, spectra, accuracy, n_tr, n_va)
        return self._arrays(rows)

    def _transfer(self, model, train_set, context: Context, role: str) -> tuple:
        """``(accuracy or None, train points, val points)`` of the retrained last layer."""
        from leafscope.applications.transfer import head_transfer_accuracy

        p: TransferParams = self.params
        if bool((train_set.labels < 0).any()) or train_set.num_classes < 2:
            return None, 0, 0
        test_set = context.data(f"{role}:test")
        if bool((test_set.labels < 0).any()):
            return None, 0, 0
        train = take_sample(train_set, p.transfer_train, p.seed)
        val = take_sample(test_set, p.transfer_val, p.seed)
        num_classes = max(train_set.num_classes, test_set.num_classes)
        accuracy = head_transfer_accuracy(model, train, val, num_classes)
        return (None, 0, 0) if accuracy is None else (accuracy, len(train[1]), len(val[1]))

    @staticmethod
    def _append(rows, pos, unit, spectra, accuracy, n_tr, n_va) -> None:
        from leafscope.applications.transfer import row_of

        row = row_of(unit["dataset"], spectra, accuracy, n_tr, n_va)
        rows["unit"].append(int(pos))
        rows["dataset"].append(unit["dataset"])
        rows["kind"].append(unit["kind"])
        for f in ROW_FIELDS:
            rows[f].append(float(getattr(row, f)))
        rows["transfer_accuracy"].append(np.nan if accuracy is None else float(accuracy))
        rows["points"].append(row.points)
        rows["transfer_train_points"].append(row.transfer_train_points)
        rows["transfer_val_points"].append(row.transfer_val_points)
        rows["log10_eigenvalues"].append(json.dumps(spectra.log10_eigenvalues().tolist()))

    def _arrays(self, rows: Mapping[str, list]) -> dict[str, np.ndarray]:
        out = {}
        for c, values in rows.items():
            if c in ("unit", "points", "transfer_train_points", "transfer_val_points"):
                out[c] = np.asarray(values, dtype=np.int64)
            elif c in (*ROW_FIELDS, "transfer_accuracy"):
                out[c] = np.asarray(values, dtype=np.float64)
            else:
                out[c] = np.asarray([str(v) for v in values])
        return out

    def _result(self, rows: Mapping[str, np.ndarray]) -> Any:
        from leafscope.applications.transfer import TransferRow, transfer_result

        table, spectra, reference = [], {}, None
        for i in range(len(rows["unit"])):
            logs = np.asarray(json.loads(str(rows["log10_eigenvalues"][i])), dtype=np.float64)
            if str(rows["kind"][i]) == "reference":
                reference = logs
                continue
            accuracy = float(rows["transfer_accuracy"][i])
            row = TransferRow(
                dataset=str(rows["dataset"][i]),
                **{f: float(rows[f][i]) for f in ROW_FIELDS},
                transfer_accuracy=None if np.isnan(accuracy) else accuracy,
                points=int(rows["points"][i]),
                transfer_train_points=int(rows["transfer_train_points"][i]),
                transfer_val_points=int(rows["transfer_val_points"][i]),
            )
            table.append(row)
            spectra[row.dataset] = logs
        p: TransferParams = self.params
        settings = {
            "points": p.points,
            "transfer_train_points": p.transfer_train,
            "transfer_val_points": p.transfer_val,
            "dtype": p.dtype,
            "seed": p.seed,
        }
        return transfer_result(table, spectra, reference, settings)

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        result = self._result(rows)
        summary = result.to_json()
        summary.pop("log10_eigenvalues")
        reference = [str(d) for d, k in zip(rows["dataset"], rows["kind"], strict=True)
                     if str(k) == "reference"]  # fmt: skip
        summary["settings"]["train_dataset"] = reference[0] if reference else None
        return summary

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        return {"log10_eigenvalues": self._result(rows).log10_eigenvalues}

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        from leafscope.applications.transfer import TransferResult, TransferRow

        rows = [TransferRow(**r) for r in summary["rows"]]
        return [TransferResult(rows=rows, distances=summary["distances"]).markdown()]
