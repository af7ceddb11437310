"""``thermo-lenet``, ``thermo-filters``, ``thermo-gnn``: temperatures of parameter groups during
training and temperature-based pruning (theory §4), one unit per seed.

* ``thermo-lenet``: the published LeNet-5 table. Per seed: train the model (default LeNet-5 for
  MNIST) without regularisation, measure the temperature of the filters of ``layer`` (conv1)
  under several definitions, and score the test data with the hottest / coldest / random /
  largest-L1 / Taylor filters removed or kept (:mod:`leafscope.thermo.lenet`).
* ``thermo-filters``: any CNN on any labelled images: the temperature of the filters of the
  convolution ``layer`` (the model's own name), and the test accuracy without the ``k``
  hottest, coldest and random filters (:mod:`leafscope.thermo.filters`).
* ``thermo-gnn``: a GCN on Planetoid (Cora, CiteSeer; not the image data layer): the
  temperature of the input features and the metric after pruning a growing fraction of them by
  temperature, at random, by magnitude and by rarity (:mod:`leafscope.thermo.gnn`).

The CNN comes from the model layer (a leafscope checkpoint, or ``MODULE:CALLABLE`` with optional
weights; the default of both image tasks is LeNet-5 for 1×28×28 images and 10 classes). Each
seed trains a fresh copy: with ``init="seeded"`` every layer is re-initialised by its own
``reset_parameters()`` after ``torch.manual_seed(seed)`` (what building the model under that
seed does), with ``init="weights"`` every seed starts from the loaded weights. The training data
are the main data set (split ``train`` by default; 10% held out for validation, seed 0) and the
test data its ``test`` split. Accuracies are fractions in [0, 1], losses cross-entropies in nats,
temperatures ``≥ 0`` (mean squared velocity per parameter of a group, see
:class:`leafscope.thermo.TemperatureMonitor`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

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

__all__ = [
    "ThermoFiltersParams",
    "ThermoFiltersTask",
    "ThermoGnnParams",
    "ThermoGnnTask",
    "ThermoLenetParams",
    "ThermoLenetTask",
    "fresh_copy",
    "reinitialise",
]

OPTIMIZERS = ("sgd", "adam")
INITS = ("seeded", "weights")
VAL_FRACTION = 0.1
#: The default model of the image tasks: LeNet-5 for 1×28×28 images and 10 classes.
LENET_FACTORY = "leafscope.models:build_model"
LENET_ARGS = {"name": "lenet", "activation": "relu", "num_classes": 10}


# --- shared pieces ------------------------------------------------------------------------------


def is_torchscript(model: nn.Module) -> bool:
    """Whether ``model`` is (or wraps) a TorchScript module."""
    return any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())


def _post_order(module: nn.Module) -> list[nn.Module]:
    out = []
    for child in module.children():
        out += _post_order(child)
    return out + [module]


def reinitialise(model: nn.Module) -> nn.Module:
    """Call every sub-module's ``reset_parameters()``, children before parents and in
    registration order (the order in which building the model initialises them); in place.

    Under the same ``torch.manual_seed`` this gives the weights a fresh build of a model made of
    PyTorch layers would have.
    """
    for module in _post_order(model):
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return model


def uncovered_parameters(model: nn.Module) -> list[str]:
    """Parameters that :func:`reinitialise` leaves as they are (their module has no
    ``reset_parameters``)."""
    out = []
    for name, module in model.named_modules():
        if callable(getattr(module, "reset_parameters", None)):
            continue
        out += [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
    return out


def fresh_copy(model: nn.Module, init: str) -> nn.Module:
    """A copy of ``model`` on the CPU: re-initialised (``init="seeded"``, drawing from torch's
    global generator) or with the loaded weights (``"weights"``), in train mode."""
    out = copy.deepcopy(model).cpu()
    if init == "seeded":
        reinitialise(out)
    return out.train()


def _layer_name(model: nn.Module, layer: str) -> str:
    """The name under which ``model.named_modules()`` holds the user's ``layer`` (a model
    wrapped by the model layer may prefix it with ``model.``)."""
    names = dict(model.named_modules())
    for candidate in (layer, f"model.{layer}"):
        if candidate and candidate in names:
            return candidate
    from leafscope.models.inspect import weighted_layers

    valid = [n.removeprefix("model.") for n in weighted_layers(model)]
    raise InputError(f"layer {layer!r} is not a layer of the model: use one of {valid}")


def _check_trainable(model: nn.Module, params: Any, task: str) -> None:
    """Refuse what a per-seed training with filter masks cannot do, in one line."""
    if is_torchscript(model):
        raise InputError(
            f"{task} trains copies of the model and masks filters with torch.nn.utils.prune, "
            "which a TorchScript module does not allow: pass the architecture as a factory "
            "MODULE:CALLABLE (its weights as weights) or a leafscope checkpoint"
        )
    if params.init == "seeded":
        left = uncovered_parameters(model)
        if left:
            shown = ", ".join(left[:5]) + (" ..." if len(left) > 5 else "")
            raise InputError(
                f"init seeded re-initialises each layer with its reset_parameters(), but the "
                f"parameters {shown} have none: use init weights (every seed starts from the "
                "loaded weights) or give their module a reset_parameters()"
            )


def _labelled_images(context: Context, task: str) -> None:
    split = context.data().split
    if split != "train":
        raise InputError(
            f"{task} trains on the train split and tests on the test split, but the data set "
            f"to train on is its {split!r} split: leave split at train"
        )
    for role in ("data", "test"):
        data = context.data(role)
        if not data.is_image or bool((data.labels < 0).any()):
            what = "vectors" if not data.is_image else "unlabelled points"
            raise InputError(
                f"{task} trains a CNN on labelled images, but {data.name} ({data.split}) holds "
                f"{what} of shape {tuple(data.input_shape)}: use a labelled image data set"
            )


def _first(data: Any, count: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` points (all for None): the training set of the protocol."""
    n = len(data) if count is None else min(count, len(data))
    return data.take(list(range(n)))


def _without_timings(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without the wall-clock times of its training history: a row holds only what
    the job defines (the same in every run and every slice)."""
    history = record.get("train_history")
    if isinstance(history, list):
        record["train_history"] = [
            {k: v for k, v in entry.items() if k != "seconds"} if isinstance(entry, dict) else entry
            for entry in history
        ]
    return record


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True)


def _rows_of(rows: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """The ``result`` JSON of every row, in unit order."""
    return [json.loads(str(text)) for text in np.asarray(rows["result"])]


def _values(record: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    return {k: (float(v[0]), float(v[1])) for k, v in record.items()}


def _table_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'condition':28s} {'test accuracy (%)':>20s} {'test loss':>18s}"]
    for row in rows:
        lines.append(
            f"{row['condition']:28s} {100 * row['accuracy_mean']:11.2f} ± "
            f"{100 * row['accuracy_std']:5.2f} {row['loss_mean']:10.3f} ± {row['loss_std']:5.3f}"
        )
    return lines


def _published_fractions(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **row,
            "accuracy_mean": row["accuracy_mean"] / 100,
            "accuracy_std": row["accuracy_std"] / 100,
        }
        for row in table
    ]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _TrainParams(Params):
    """What the two image tasks share: seeds, training and data sizes."""

    seeds: int = param(3, help="number of seeds (0..N-1: initialisation, batch order, controls)")
    optimizer: str = param("sgd", help="optimizer (no weight decay)", choices=OPTIMIZERS)
    lr: float = param(0.01, help="learning rate")
    momentum: float = param(0.0, help="SGD momentum")
    epochs: int = param(8, help="training epochs per seed")
    batch_size: int = param(32, help="training batch size")
    window: int | None = param(
        1, help="epochs averaged for the temperature: N (1: the last epoch) or all"
    )
    layer: str = param("conv1", help="the convolution whose filters are measured (its own name)")
    init: str = param(
        "seeded",
        help="seeded: every layer re-initialised per seed (reset_parameters); weights: every "
        "seed starts from the loaded weights",
        choices=INITS,
    )
    train_points: int | None = param(
        None, help="first N points of the training split (all: every point)"
    )
    test_points: int | None = param(
        None, help="N points of the test split (a seeded sample stratified by label; all: every)"
    )

    def validate(self) -> None:
        if self.seeds < 1:
            raise InputError(f"seeds must be >= 1 (got {self.seeds})")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be sgd or adam (got {self.optimizer!r})")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr must be a number > 0 (got {self.lr})")
        if not (np.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise InputError(f"momentum must lie in [0, 1) (got {self.momentum})")
        for name in ("epochs", "batch_size", "window"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be >= 1 (got {value})")
        if not self.layer:
            raise InputError("layer must name a convolution of the model, e.g. conv1")
        if self.init not in INITS:
            raise InputError(f"init must be seeded or weights (got {self.init!r})")
        for name in ("train_points", "test_points"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise InputError(f"{name} must be >= 2 (got {value})")

    def fit_settings(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": 0.0,
            "momentum": self.momentum if self.optimizer == "sgd" else 0.0,
            "batch_size": self.batch_size,
        }


class _ImageThermoTask(Task):
    """What the two image tasks share: the model, the data, the units (seeds)."""

    per_point = False
    images_only = True
    default_split = "train"

    def extra_models(self, model: Any) -> dict[str, Any]:
        if model is not None:
            return {}
        from leafscope.models.spec import ModelSpec

        return {"model": ModelSpec(factory=LENET_FACTORY, factory_kwargs=_json_text(LENET_ARGS))}

    def extra_data(self, data: Any) -> dict[str, Any]:
        purpose = "the thermo tasks measure the test accuracy on the test split"
        return split_roles(data, purpose, test="test")

    def units(self, context: Context) -> list[Any]:
        return list(range(self.params.seeds))

    def _prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.thermo.groups import resolve_layer

        model = context.model()
        _check_trainable(model, self.params, self.name)
        _labelled_images(context, self.name)
        layer = _layer_name(model, self.params.layer)
        n = resolve_layer(model, layer, "filters").n_groups
        train, test = context.data(), context.data("test")
        n_train = len(train) if self.params.train_points is None else min(
            self.params.train_points, len(train))  # fmt: skip
        n_test = len(test) if self.params.test_points is None else min(
            self.params.test_points, len(test))  # fmt: skip
        return {"layer": layer, "filters": n, "train_size": n_train, "test_size": n_test}

    def _make_model(self, context: Context):
        base = context.model()
        return functools.partial(fresh_copy, base, self.params.init)

    def _chance(self, table: list[dict[str, Any]], context: Context) -> dict[str, Any]:
        """Whether a seed trained to chance (test accuracy within ``CHANCE_MARGIN`` of
        1 / classes): its temperatures describe an untrained network, so warn."""
        classes = max(1, int(context.data().num_classes))
        chance = 1.0 / classes
        original = next(r for r in table if r["condition"] == "original")
        low = [a for a in original["accuracies"] if a <= chance + CHANCE_MARGIN]
        if low:
            p = self.params
            warnings.warn(
                f"the model trained to chance: test accuracy {', '.join(f'{a:.3f}' for a in low)}"
                f" against chance {chance:.3f} ({classes} classes); the temperatures and the "
                f"pruning table describe an untrained network: train longer (`epochs`, now "
                f"{p.epochs}) or with a larger learning rate (`lr`, now {p.lr})",
                UserWarning,
                stacklevel=2,
            )
        return {"num_classes": classes, "chance_accuracy": chance, "trained_to_chance": bool(low)}

    def _common_summary(self, context: Context) -> dict[str, Any]:
        p = self.params
        return {
            "layer": p.layer,
            "filters": context.meta["filters"],
            "seeds": p.seeds,
            "init": p.init,
            "train_size": context.meta["train_size"],
            "test_size": context.meta["test_size"],
            "fit": p.fit_settings(),
            "window": p.window,
        }


#: Accuracy above chance (1 / classes, a fraction) at or below which a seed counts as
#: trained to chance.
CHANCE_MARGIN = 0.02


# --- thermo-lenet -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThermoLenetParams(_TrainParams):
    """Parameters of :class:`ThermoLenetTask` (defaults: the published experiment)."""

    seeds: int = param(5, help="number of seeds (0..N-1: initialisation, batch order, controls)")
    velocity: str = param(
        "step",
        help="velocity of the main temperature: per optimizer step, or displacement per epoch / "
        "steps",
        choices=("step", "epoch"),
    )
    taylor_batches: int = param(4, help="training batches of 256 for the Taylor scores")

    def validate(self) -> None:
        super().validate()
        if self.velocity not in ("step", "epoch"):
            raise InputError(f"velocity must be step or epoch (got {self.velocity!r})")
        if self.taylor_batches < 1:
            raise InputError(f"taylor_batches must be >= 1 (got {self.taylor_batches})")


@register_task
class ThermoLenetTask(_ImageThermoTask):
    """The LeNet-5 filter-temperature pruning table, one unit per seed."""

    name = "thermo-lenet"
    Params = ThermoLenetParams
    summary = "filter temperatures of LeNet-5 on MNIST and the hot/cold pruning table"
    description = (
        "Per seed: train the model (default LeNet-5 for MNIST) without regularisation, measure "
        "the temperature of the filters of --layer (conv1) under several definitions, and score "
        "the test split with the hottest, coldest, random, largest-L1 and Taylor filters "
        "removed or kept (masked, no retraining). Rows: per seed the main temperature per "
        "filter, test accuracy (fraction) and loss per condition; summary: mean ± std over "
        "seeds next to the published table."
    )
    columns = (
        "unit",
        "seed",
        "test_accuracy",
        "test_loss",
        "temperature",
        "accuracy",
        "loss",
        "single_filter_accuracy_drop",
        "result",
    )

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.thermo.lenet import MIN_FILTERS

        meta = self._prepare(context)
        if meta["filters"] < MIN_FILTERS:
            raise InputError(
                f"layer {self.params.layer!r} has {meta['filters']} filters: the table removes 2 "
                f"and keeps 3, so it needs at least {MIN_FILTERS} (thermo-filters takes any)"
            )
        return meta

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.thermo.lenet import CONDITIONS, lenet_seed

        p: ThermoLenetParams = self.params
        meta = context.meta
        x, y = _first(context.data(), meta["train_size"])
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        n_val = int(round(VAL_FRACTION * len(x)))
        val, train = (x[perm[:n_val]], y[perm[:n_val]]), (x[perm[n_val:]], y[perm[n_val:]])
        test = take_sample(context.data("test"), meta["test_size"], context.seed)
        make_model = self._make_model(context)
        out: dict[str, list] = {c: [] for c in self.columns}
        for pos in positions:
            seed = int(context.units[pos])
            values, variants, record = lenet_seed(
                make_model, seed, train, val, test, settings=p.fit_settings(),
                velocity=p.velocity, window=p.window, taylor_batches=p.taylor_batches,
                device=context.device, layer=meta["layer"],
            )  # fmt: skip
            main = record["temperatures"][record["main_temperature"]]
            out["unit"].append(pos)
            out["seed"].append(seed)
            out["test_accuracy"].append(values["original"][0])
            out["test_loss"].append(values["original"][1])
            out["temperature"].append(main)
            out["accuracy"].append([values[c][0] for c in CONDITIONS])
            out["loss"].append([values[c][1] for c in CONDITIONS])
            out["single_filter_accuracy_drop"].append(record["single_filter_accuracy_drop"])
            record["layer"] = p.layer
            record = _without_timings(record)
            result = {"values": values, "variants": variants, "record": record}
            out["result"].append(_json_text(result))
        return _arrays(out)

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        from leafscope.thermo.lenet import CONDITIONS, PUBLISHED, aggregate

        results = _rows_of(rows)
        values = [_values(r["values"]) for r in results]
        variants = [{k: _values(v) for k, v in r["variants"].items()} for r in results]
        table, variant_rows = aggregate(values, variants)
        rows_json = [r.to_json() for r in table]
        return {
            **self._common_summary(context),
            **self._chance(rows_json, context),
            "velocity": self.params.velocity,
            "main_temperature": results[0]["record"]["main_temperature"],
            "conditions": CONDITIONS,
            "rows": [r.to_json() for r in table],
            "variants": {k: [r.to_json() for r in v] for k, v in variant_rows.items()},
            "published": _published_fractions(PUBLISHED),
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        return _table_lines(summary["rows"])

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        return {
            "rows": summary["rows"],
            "variants": summary["variants"],
            "published": summary["published"],
            "per_seed": [r["record"] for r in _rows_of(rows)],
        }


# --- thermo-filters -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThermoFiltersParams(_TrainParams):
    """Parameters of :class:`ThermoFiltersTask`."""

    k: int | None = param(None, help="filters removed per condition (default: a third of them)")

    def validate(self) -> None:
        super().validate()
        if self.k is not None and self.k < 1:
            raise InputError(f"k must be >= 1 (got {self.k})")


@register_task
class ThermoFiltersTask(_ImageThermoTask):
    """The temperature of the filters of one convolution of any CNN, one unit per seed."""

    name = "thermo-filters"
    Params = ThermoFiltersParams
    summary = "any CNN on any labelled images: temperature of the filters of --layer and pruning"
    description = (
        "Per seed: train the model (--checkpoint, or --model MODULE:CALLABLE with --weights; "
        "default LeNet-5 for MNIST) on the training split (10% held out for validation) with a "
        "temperature monitor on the filters of the convolution --layer (the model's own name), "
        "then score the test split without the k hottest, the k coldest and k random filters "
        "(masked, no retraining). Rows: per seed one temperature per filter, test accuracy "
        "(fraction) and loss per condition, the accuracy drop of each filter removed alone."
    )
    columns = ThermoLenetTask.columns

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.thermo.filters import check_k

        meta = self._prepare(context)
        meta["k"] = check_k(self.params.k, meta["filters"], self.params.layer)
        return meta

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.data import train_val_split
        from leafscope.thermo.filters import filter_conditions, filter_seed

        p: ThermoFiltersParams = self.params
        meta = context.meta
        x, y = _first(context.data(), meta["train_size"])
        tr, va = train_val_split(len(x), VAL_FRACTION, 0)
        train, val = (x[tr], y[tr]), (x[va], y[va])
        test = take_sample(context.data("test"), meta["test_size"], context.seed)
        make_model = self._make_model(context)
        conditions = filter_conditions(meta["k"])
        out: dict[str, list] = {c: [] for c in self.columns}
        for pos in positions:
            seed = int(context.units[pos])
            values, record = filter_seed(
                make_model, seed, train, val, test, layer=meta["layer"], k=meta["k"],
                window=p.window, settings=p.fit_settings(), device=context.device,
            )  # fmt: skip
            out["unit"].append(pos)
            out["seed"].append(seed)
            out["test_accuracy"].append(values["original"][0])
            out["test_loss"].append(values["original"][1])
            out["temperature"].append(record["temperatures"])
            out["accuracy"].append([values[c][0] for c in conditions])
            out["loss"].append([values[c][1] for c in conditions])
            out["single_filter_accuracy_drop"].append(record["single_filter_accuracy_drop"])
            record["layer"] = p.layer
            record = _without_timings(record)
            out["result"].append(_json_text({"values": values, "record": record}))
        return _arrays(out)

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        from leafscope.thermo.filters import filter_conditions
        from leafscope.thermo.tables import aggregate_rows

        k = int(context.meta["k"])
        values = [_values(r["values"]) for r in _rows_of(rows)]
        table = aggregate_rows(values, filter_conditions(k))
        return {
            **self._common_summary(context),
            **self._chance([r.to_json() for r in table], context),
            "k": k,
            "conditions": filter_conditions(k),
            "rows": [r.to_json() for r in table],
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        return _table_lines(summary["rows"])

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        return {"rows": summary["rows"], "per_seed": [r["record"] for r in _rows_of(rows)]}


# --- thermo-gnn ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _planetoid(name: str, data_dir: str | None) -> Any:
    """The Planetoid graph ``name`` (once per process)."""
    from leafscope.data.planetoid import load_planetoid

    return load_planetoid(name, data_dir=data_dir)


def _default_ratios() -> tuple[float, ...]:
    from leafscope.thermo.gnn import DEFAULT_RATIOS

    return tuple(float(r) for r in DEFAULT_RATIOS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThermoGnnParams(Params):
    """Parameters of :class:`ThermoGnnTask` (defaults: the published experiment)."""

    dataset: str = param("cora", help="the Planetoid graph", choices=("cora", "citeseer"))
    task: str = param(
        "node", help="node classification (accuracy) or link prediction (AUROC)",
        choices=("node", "link"),
    )  # fmt: skip
    seeds: int = param(3, help="number of seeds (0..N-1)")
    epochs: int | None = param(None, help="full-batch Adam steps (default: 200 node, 300 link)")
    lr: float = param(0.01, help="Adam learning rate")
    weight_decay: float | None = param(None, help="Adam weight decay (default: 5e-4 node, 0 link)")
    ratios: tuple[float, ...] = param(
        (0.0, 7.0, 14.0, 28.0, 35.0, 42.0, 63.0, 70.0, 88.0, 95.0),
        help="pruning ratios in percent of the input features, comma-separated",
        metavar="R[,R...]",
    )
    data_dir: str | None = param(None, help="folder searched first for the Planetoid files")

    def validate(self) -> None:
        from leafscope.thermo.gnn import check_gnn_args

        if self.dataset not in ("cora", "citeseer"):
            raise InputError(f"dataset must be cora or citeseer (got {self.dataset!r})")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr must be a number > 0 (got {self.lr})")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise InputError(f"weight_decay must be >= 0 (got {self.weight_decay})")
        if len(set(self.ratios)) != len(self.ratios):
            raise InputError(f"ratios must be distinct (got {list(self.ratios)})")
        try:
            check_gnn_args(self.task, self.seeds, self.ratios, self.epochs, self.weight_decay)
        except InputError as exc:
            text = str(exc)
            if text.startswith(("seeds ", "epochs ")):
                raise
            field = "task" if text.startswith("unknown task") else "ratios"
            raise InputError(f"{field}: {text}") from None

    def resolved(self) -> tuple[int, float]:
        """Epochs and weight decay with the task's defaults filled in."""
        from leafscope.thermo.gnn import check_gnn_args

        _, epochs, wd = check_gnn_args(
            self.task, self.seeds, self.ratios, self.epochs, self.weight_decay
        )
        return epochs, wd


@register_task
class ThermoGnnTask(Task):
    """The GCN input-feature temperature pruning curves, one unit per seed."""

    name = "thermo-gnn"
    Params = ThermoGnnParams
    per_point = False
    needs_model = False
    needs_data = False
    summary = "GCN on Planetoid: input-feature temperatures and pruning curves"
    description = (
        "Per seed: train a 2-layer GCN on a Planetoid graph (Cora, CiteSeer; full batch, Adam) "
        "with a temperature monitor on its input features, then zero a growing share of them "
        "(no retraining) chosen cold-first, hot-first, at random, by magnitude and rarest-first. "
        "Rows: per seed the temperature of every input feature and the metric (test accuracy "
        "or AUROC, a fraction) per criterion and ratio; summary: the curves, mean ± std."
    )
    columns = ("unit", "seed", "metric_before_pruning", "temperature", "metric", "result")

    def units(self, context: Context) -> list[Any]:
        return list(range(self.params.seeds))

    def prepare(self, context: Context) -> dict[str, Any]:
        p: ThermoGnnParams = self.params
        data = _planetoid(p.dataset, p.data_dir)
        epochs, wd = p.resolved()
        return {"num_features": int(data.x.shape[1]), "epochs": epochs, "weight_decay": wd}

    def _keys(self) -> list[tuple[str, float]]:
        from leafscope.thermo.gnn import CRITERIA

        return [(c, float(r)) for c in CRITERIA for r in self.params.ratios]

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.thermo.gnn import gnn_seed

        p: ThermoGnnParams = self.params
        data = _planetoid(p.dataset, p.data_dir)
        out: dict[str, list] = {c: [] for c in self.columns}
        for pos in positions:
            seed = int(context.units[pos])
            values, record = gnn_seed(
                p.task, data, seed, epochs=context.meta["epochs"], lr=p.lr,
                weight_decay=context.meta["weight_decay"], ratios=p.ratios,
                device=context.device,
            )  # fmt: skip
            out["unit"].append(pos)
            out["seed"].append(seed)
            out["metric_before_pruning"].append(record["metric_before_pruning"])
            out["temperature"].append(record["temperatures"])
            out["metric"].append([values[key] for key in self._keys()])
            record.pop("temperatures")
            out["result"].append(_json_text(record))
        return _arrays(out)

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        from leafscope.thermo.gnn import CRITERIA, PUBLISHED_CURVE
        from leafscope.thermo.tables import mean_std

        p: ThermoGnnParams = self.params
        metric = np.asarray(rows["metric"], dtype=np.float64)
        curves = []
        for j, (criterion, ratio) in enumerate(self._keys()):
            values = [float(v) for v in metric[:, j]]
            mean, std = mean_std(values)
            curves.append(
                {"criterion": criterion, "ratio": ratio, "metric_mean": mean,
                 "metric_std": std, "values": values}
            )  # fmt: skip
        published = {
            k: (v if k == "ratio" else [x / 100 for x in v]) for k, v in PUBLISHED_CURVE.items()
        }
        return {
            "dataset": p.dataset,
            "task": p.task,
            "metric": "accuracy" if p.task == "node" else "auroc",
            "seeds": p.seeds,
            "epochs": context.meta["epochs"],
            "weight_decay": context.meta["weight_decay"],
            "num_features": context.meta["num_features"],
            "criteria": list(CRITERIA),
            "ratios": [float(r) for r in p.ratios],
            "curves": curves,
            "published": published,
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        criteria = summary["criteria"]
        lines = [
            f"{summary['metric']} (%) of GCN on {summary['dataset']} ({summary['task']}) after "
            "pruning input features",
            f"{'ratio %':>8s} " + " ".join(f"{c:>16s}" for c in criteria),
        ]
        cells = {(c["criterion"], c["ratio"]): c for c in summary["curves"]}
        for ratio in summary["ratios"]:
            row = [cells[(c, ratio)] for c in criteria]
            lines.append(
                f"{ratio:8.0f} "
                + " ".join(
                    f"{100 * c['metric_mean']:9.2f} ± {100 * c['metric_std']:4.2f}" for c in row
                )
            )
        return lines

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        return {
            "metric": summary["metric"],
            "curves": summary["curves"],
            "published": summary["published"],
            "per_seed": _rows_of(rows),
        }


def _arrays(out: Mapping[str, list]) -> dict[str, np.ndarray]:
    """Columns from per-row lists: integers, floats, 2-D float rows, JSON text."""
    arrays = {}
    for name, values in out.items():
        if name == "result":
            arrays[name] = np.asarray(values, dtype=str)
        elif name in ("unit", "seed"):
            arrays[name] = np.asarray(values, dtype=np.int64)
        else:
            arrays[name] = np.asarray(values, dtype=np.float64)
    return arrays
