"""``early-stopping``: channel-wise early stopping without validation data (CW-DeepNNK) against
validation-based early stopping, on any model.

Units: one per seed. The model (``checkpoint`` / ``model`` + ``weights``; its layers by their
own names) is copied and, unless ``keep_weights``, re-initialised with the seed (every layer's
``reset_parameters`` after ``torch.manual_seed(seed)``); the same initial network is trained
twice on the first ``train_points`` points of the data set: once with the next ``val_points``
points as validation data (stop after ``patience`` epochs without a better validation accuracy;
keep the best epoch), once with CW-DeepNNK (the per-channel leave-one-out NNK error of ``layer``
on ``points`` training points, a seeded sample stratified by label; a channel freezes after
``patience`` epochs without improvement; training stops when every channel is frozen).
``test_points`` of the test split (sampled likewise) score both. The two runs of seed S are
written to ``runs_dir/seedS/val`` and ``.../cw`` (leafscope checkpoints holding the model's own
parameter names: ``nnk --model F --run runs_dir/seedS/cw`` measures them).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.errors import InputError
from leafscope.tasks import _nnk
from leafscope.tasks.base import (
    Context,
    Params,
    Task,
    param,
    register_task,
    split_roles,
    take_sample,
)

__all__ = ["EarlyStoppingParams", "EarlyStoppingTask", "reset_parameters"]

#: Summary entries: name -> (part, key) of a seed's result.
SUMMARY = {
    "validation_stop_epoch": ("validation", "stop_epoch"),
    "validation_best_epoch": ("validation", "best_epoch"),
    "validation_test_accuracy": ("validation", "test_accuracy_at_best"),
    "cw_stop_epoch": ("cw_deepnnk", "stop_epoch"),
    "cw_test_accuracy": ("cw_deepnnk", "test_accuracy"),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class EarlyStoppingParams(Params):
    """Parameters of :class:`EarlyStoppingTask`.

    Attributes:
        layer: the layer whose channels are tracked (output (N, C, ...), e.g. a convolution).
        train_points: training points (the first N of the data set; default: all but the
            validation points); val_points: the validation points after them.
        points: N training points (a seeded sample stratified by label) on which the channel
            LOO errors are measured.
        test_points: N points of the test split (sampled likewise) score both runs (None:
            all).
        epochs: at most this many epochs; patience: epochs without improvement (both rules).
        k: kNN candidates of the NNK classifier.
        lr, momentum, batch_size: SGD settings (learning rate, momentum, images per step).
        seed, seeds: seeds ``seed .. seed + seeds - 1`` (initialisation and batch order), one
            unit each.
        runs_dir: folder of the training runs (None: a temporary folder, deleted after).
        keep_weights: train from the model's loaded weights instead of a seeded
            re-initialisation.
    """

    layer: str = param("conv2", help="layer whose channels are tracked (a convolution)")
    train_points: int | None = param(
        None, help="training points: the first N of the data set (default: all but validation)"
    )
    val_points: int = param(6000, help="validation points, the ones after the training points")
    points: int = param(
        1000,
        help="N training points (a seeded sample stratified by label) measure the channel LOO "
        "errors",
    )
    test_points: int | None = param(
        None, help="N test points (sampled likewise) score both runs (default: the whole split)"
    )
    epochs: int = param(15, help="at most this many epochs")
    patience: int = param(2, help="epochs without improvement before stopping / freezing")
    k: int = param(15, help="kNN candidates of the NNK classifier")
    lr: float = param(0.01, help="SGD learning rate")
    momentum: float = param(0.9, help="SGD momentum")
    batch_size: int = param(64, help="training images per SGD step")
    seed: int = param(0, help="first seed (initialisation and batch order)")
    seeds: int = param(1, help="run seeds seed .. seed+N-1, one unit each (mean and std)")
    runs_dir: str | None = param(
        None,
        help="folder of the training runs, seedS/val and seedS/cw (default: a temporary one)",
        metavar="DIR",
    )
    keep_weights: bool = param(
        False, help="train from the model's loaded weights, not a seeded re-initialisation"
    )

    def validate(self) -> None:
        object.__setattr__(self, "layer", self.layer.strip())
        if not self.layer:
            raise InputError("`layer` must name a layer of the model, e.g. conv2")
        for name in ("val_points", "epochs", "patience", "k", "batch_size", "seeds"):
            if getattr(self, name) < 1:
                raise InputError(f"`{name}` must be >= 1 (got {getattr(self, name)})")
        if self.points < 3:
            raise InputError(f"`points` must be >= 3 for an NNK graph (got {self.points})")
        if self.test_points is not None and self.test_points < 1:
            raise InputError(f"`test_points` must be >= 1 (got {self.test_points})")
        if self.train_points is not None and self.train_points < self.points:
            raise InputError(
                f"`train_points={self.train_points}` must be >= `points={self.points}` (the LOO "
                "errors are measured on training points)"
            )
        if not self.lr > 0 or self.momentum < 0:
            raise InputError(
                f"`lr` must be > 0 and `momentum` >= 0 (got {self.lr}, {self.momentum})"
            )
        if self.seed < 0:
            raise InputError(f"`seed` must be >= 0 (got {self.seed})")


def reset_parameters(model: torch.nn.Module, seed: int) -> int:
    """Re-initialise ``model`` from ``seed``: ``torch.manual_seed(seed)``, then every sub-module's
    own ``reset_parameters`` in registration order (for a leafscope model: the weights it is
    built with after that seed). Parameters of modules without one keep their values.

    Returns:
        How many modules were reset.
    """
    torch.manual_seed(seed)
    count = 0
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if module is not model and callable(reset):
            reset()
            count += 1
    return count


@register_task
class EarlyStoppingTask(Task):
    """CW-DeepNNK against validation early stopping, one unit per seed."""

    name = "early-stopping"
    Params = EarlyStoppingParams
    summary = "channel-wise early stopping without validation data (CW-DeepNNK) vs validation"
    description = (
        "Train the same initial network twice per seed (one unit each): once with a "
        "validation set (stop after --patience epochs without a better validation accuracy, "
        "keep the best epoch), once with CW-DeepNNK (per-channel leave-one-out NNK error of "
        "--layer on --points training points (a seeded sample stratified by label); a "
        "channel freezes after --patience epochs without improvement; stop when all are "
        "frozen). Reports test accuracy and "
        "stopping epochs per seed, mean and std. Training uses the first --train-points "
        "points of the data set, validation the --val-points after them, --test-points of "
        "the test split score both; the model is yours (--model MODULE:CALLABLE or --checkpoint), "
        "re-initialised per seed; the runs go to --runs-dir."
    )
    per_point = False
    default_split = "train"
    columns = (
        "unit",
        "seed",
        "validation_stop_epoch",
        "validation_best_epoch",
        "validation_test_accuracy",
        "cw_stop_epoch",
        "cw_all_frozen",
        "cw_test_accuracy",
        "channels",
        "channels_frozen",
        "frozen_at",
        "result",
    )

    def extra_data(self, data: Any) -> dict[str, Any]:
        purpose = "early-stopping measures the test error on the test split"
        return split_roles(data, purpose, test="test")

    def units(self, context: Context) -> list[dict[str, Any]]:
        p: EarlyStoppingParams = self.params
        return [{"seed": s} for s in range(p.seed, p.seed + p.seeds)]

    def _model(self, context: Context, seed: int) -> torch.nn.Module:
        """A fresh copy of the job's model, re-initialised from ``seed`` unless kept."""
        net = copy.deepcopy(context.model())
        if not self.params.keep_weights and reset_parameters(net, seed) == 0:
            raise InputError(
                "the model has no layer with reset_parameters (a TorchScript model?), so it "
                "cannot be re-initialised per seed: set `keep_weights` to train from its weights"
            )
        return net

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.models.features import layer_features

        p: EarlyStoppingParams = self.params
        data = context.data()
        n = len(data)
        n_train = n - p.val_points if p.train_points is None else p.train_points
        if n_train < p.points or n_train + p.val_points > n:
            raise InputError(
                f"`train_points={n_train}` + `val_points={p.val_points}` must fit in the {n} "
                f"points of {data.name} ({data.split}), with `points={p.points}` <= "
                "`train_points`"
            )
        x, y = data.take(list(range(min(n, 64))))
        if bool((y < 0).any()):
            raise InputError("early stopping trains a classifier: the data need labels")
        net = self._model(context, p.seed)
        _nnk.check_layers(net, [p.layer])
        with torch.no_grad():
            feats = layer_features(net, x[:2], [p.layer], shape="channels", device=context.device)
        shape = tuple(feats[p.layer].shape[1:])
        if len(shape) != 2 or shape[1] < 2:
            raise InputError(
                f"`layer={p.layer}` gives features of shape {shape} per point: CW-DeepNNK needs "
                "a layer with channels of several values each (a convolution, output (N, C, H, "
                "W)); vectors (N, D) and dense layers have none"
            )
        test = len(context.data("test"))
        return {
            "train_points": n_train,
            "test_points": test if p.test_points is None else min(p.test_points, test),
            "channels": int(shape[0]),
        }

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.data import select_points
        from leafscope.nnk.stopping import compare_early_stopping

        p: EarlyStoppingParams = self.params
        n_train = int(context.meta["train_points"])
        x, y = context.data().take(list(range(n_train + p.val_points)))
        test = take_sample(context.data("test"), int(context.meta["test_points"]), context.seed)
        # the channel LOO points: the seeded sample stratified by label --points is everywhere
        measured = select_points(y[:n_train], points=p.points, seed=context.seed)
        rows: dict[str, list] = {c: [] for c in self.columns}
        for pos in positions:
            seed = int(context.units[pos]["seed"])
            net = self._model(context, seed)
            options = dict(
                model=net, layer=p.layer, points=measured, epochs=p.epochs,
                patience=p.patience, k=p.k, seed=seed, lr=p.lr, momentum=p.momentum,
                batch_size=p.batch_size, device=context.device,
            )  # fmt: skip
            splits = ((x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), test)
            if p.runs_dir is None:
                with tempfile.TemporaryDirectory(prefix="leafscope-es-") as folder:
                    result = compare_early_stopping(*splits, folder, **options)
            else:
                folder = Path(p.runs_dir).expanduser().resolve() / f"seed{seed}"
                result = compare_early_stopping(*splits, folder, **options)
            val, cw = result["validation"], result["cw_deepnnk"]
            rows["unit"].append(pos)
            rows["seed"].append(seed)
            rows["validation_stop_epoch"].append(val["stop_epoch"])
            rows["validation_best_epoch"].append(val["best_epoch"])
            rows["validation_test_accuracy"].append(val["test_accuracy_at_best"])
            rows["cw_stop_epoch"].append(cw["stop_epoch"])
            rows["cw_all_frozen"].append(bool(cw["all_frozen"]))
            rows["cw_test_accuracy"].append(cw["test_accuracy"])
            rows["channels"].append(len(cw["frozen_at"]))
            rows["channels_frozen"].append(sum(e >= 0 for e in cw["frozen_at"]))
            rows["frozen_at"].append(np.asarray(cw["frozen_at"], dtype=np.float64))
            rows["result"].append(_nnk.json_cell(result))
        out = {k: np.asarray(v) for k, v in rows.items()}
        for name in ("unit", "seed", "validation_stop_epoch", "validation_best_epoch",
                     "cw_stop_epoch", "channels", "channels_frozen"):  # fmt: skip
            out[name] = out[name].astype(np.int64)
        return out

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        per_seed = _per_seed(rows)
        summary: dict[str, Any] = {
            "seeds": [int(s) for s in rows["seed"]],
            "train_points": int(context.meta["train_points"]),
        }
        for name, (part, key) in SUMMARY.items():
            values = [float(r[part][key]) for r in per_seed]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            summary[name] = {"mean": float(np.mean(values)), "std": std, "values": values}
        summary["cw_channels_frozen"] = [int(v) for v in rows["channels_frozen"]]
        summary["channels"] = int(context.meta["channels"])
        return summary

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        per_seed = _per_seed(rows)
        out: dict[str, Any] = {"per_seed": per_seed}
        if len(per_seed) == 1:  # one seed: its result at the top
            out.update(per_seed[0])
        return out

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = []
        for i, seed in enumerate(summary["seeds"]):
            value = {name: summary[name]["values"][i] for name in SUMMARY}
            lines.append(
                f"seed {seed}: validation stopping: stop epoch "
                f"{value['validation_stop_epoch']:.0f}, best epoch "
                f"{value['validation_best_epoch']:.0f}, test accuracy "
                f"{100 * value['validation_test_accuracy']:.2f}%"
            )
            lines.append(
                f"seed {seed}: CW-DeepNNK (no validation data): stop epoch "
                f"{value['cw_stop_epoch']:.0f} ({summary['cw_channels_frozen'][i]}/"
                f"{summary['channels']} channels frozen), test accuracy "
                f"{100 * value['cw_test_accuracy']:.2f}%"
            )
        if len(summary["seeds"]) > 1:
            for name in SUMMARY:
                s = summary[name]
                n = len(s["values"])
                lines.append(f"{name}: {s['mean']:.4f} ± {s['std']:.4f} over {n} seeds")
        return lines


def _per_seed(rows: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    order = np.argsort(np.asarray(rows["unit"]), kind="stable")
    return [json.loads(str(rows["result"][i])) for i in order]
