"""``stability``: are the NNK graphs of the same points the same under several models (seeds,
data subsets)?

Units: one per (pair of models, layer). The NNK graph of each layer's features on ``points``
points (a seeded sample stratified by label) is built under both models; the row holds the
Jaccard overlap of their NNK edges (and of the kNN edges they were selected from, and the chance
level), and the 1-Wasserstein / Kolmogorov–Smirnov distances between the per-node distributions
of the manifold graph metrics. A model compared with itself has overlap 1 and distance 0.
Models: the main one (``checkpoint`` or ``model`` + ``weights``) and those of ``runs``, derived
from it (see :mod:`leafscope.tasks._nnk`), or the runs alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from leafscope.errors import InputError
from leafscope.tasks import _nnk
from leafscope.tasks.base import Context, Params, Task, param, register_task

__all__ = ["StabilityParams", "StabilityTask", "rows_to_layers"]

METRICS = ("n_neighbors", "diameter", "local_dim", "orientation")
KERNELS = ("cosine", "gaussian")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StabilityParams(Params):
    """Parameters of :class:`StabilityTask`.

    Attributes:
        layers: layer names of the models (as the models name them).
        runs: further models, ``PATH`` or ``LABEL=PATH``: leafscope checkpoints, run folders
            (their newest checkpoint), TorchScript files, or (with a user main model) weight
            files of its architecture. Every pair of models is compared.
        points: N points of the data set (a seeded sample stratified by label) form the
            graphs' nodes.
        k: kNN candidates per node (capped at ``points - 1``); kernel: ``cosine``/``gaussian``.
        orientation: also compare the orientation MGM (radians; slow on wide layers).
    """

    layers: tuple[str, ...] = param(
        (), help="layer names of the models, comma-separated, e.g. conv1,fc1", metavar="NAME,..."
    )
    runs: tuple[str, ...] = param(
        (),
        help="models compared with --checkpoint/--model (or with each other): run folders, "
        "checkpoints, TorchScript or weight files, each PATH or LABEL=PATH",
        metavar="[LABEL=]PATH,...",
    )
    points: int = param(
        1000, help="N points of the data set (a seeded sample stratified by label) are the nodes"
    )
    k: int = param(15, help="kNN candidates per node (capped at points - 1)")
    kernel: str = param("cosine", help="NNK kernel", choices=KERNELS)
    orientation: bool = param(False, help="also compare the orientation MGM (slow)")

    def validate(self) -> None:
        object.__setattr__(self, "layers", _nnk.split_names(self.layers))
        object.__setattr__(self, "runs", tuple(r.strip() for r in self.runs if r.strip()))
        if self.points < 3:
            raise InputError(f"`points` must be >= 3 for an NNK graph (got {self.points})")
        if self.k < 1:
            raise InputError(f"`k` must be >= 1 (got {self.k})")
        if self.kernel not in KERNELS:
            raise InputError(f"`kernel` must be one of {', '.join(KERNELS)} (got {self.kernel!r})")


def _too_few(count: int) -> InputError:
    return InputError(
        f"stability compares models: it needs at least 2, got {count} (give `runs`, with or "
        "without a main model)"
    )


@register_task
class StabilityTask(Task):
    """Edge overlap and MGM distances of NNK graphs per pair of models and layer."""

    name = "stability"
    payload_file = "stability.json"  # per layer the overlaps and distances: its figure
    Params = StabilityParams
    summary = "edge overlap and MGM distances of NNK graphs across models (seeds, data subsets)"
    description = (
        "Build the NNK graph of the same points (--points of the data set) under "
        "each model, layer by layer, and compare every pair of models (one unit per pair and "
        "layer): Jaccard overlap of the NNK edges (and of the kNN edges they were selected "
        "from, and the chance level), and Wasserstein / KS distances between the per-node "
        "distributions of the manifold graph metrics. Models: --checkpoint or --model (+ "
        "--weights) and --runs. The figure's data go to OUT/_files/stability.json."
    )
    per_point = False
    columns = (
        "unit",
        "a",
        "b",
        "layer",
        "nnk_jaccard",
        "knn_jaccard",
        "nnk_chance",
        "nnk_edges_a",
        "nnk_edges_b",
        "nnk_common",
        *(f"{m}_wasserstein" for m in METRICS),
        "result",
    )

    def extra_models(self, model: Any) -> dict[str, Any]:
        _nnk.require_layers(self.params.layers)
        count = (model is not None) + len(self.params.runs)
        if count < 2:
            raise _too_few(count)
        return _nnk.run_models(model, self.params.runs)

    def units(self, context: Context) -> list[dict[str, Any]]:
        _nnk.require_layers(self.params.layers)
        roles = _nnk.model_roles(context, self.params.runs)
        if len(roles) < 2:
            raise _too_few(len(roles))
        pairs = list(itertools.combinations(range(len(roles)), 2))
        return [
            {"i": i, "j": j, "a": roles[i][0], "b": roles[j][0], "label_a": roles[i][1],
             "label_b": roles[j][1], "layer": layer}
            for layer in self.params.layers
            for i, j in pairs
        ]  # fmt: skip

    def prepare(self, context: Context) -> dict[str, Any]:
        from leafscope.data import check_model_input

        p: StabilityParams = self.params
        data = context.data()
        _nnk.sample_points(context, p.points)
        seen = set()
        for unit in context.units:
            for role, label in ((unit["a"], unit["label_a"]), (unit["b"], unit["label_b"])):
                if role in seen:
                    continue
                seen.add(role)
                model = context.model(role)
                _nnk.check_layers(model, p.layers)
                check_model_input(model, data.dataset([0]), source=f"the data for {label}")
        labels = {u["i"]: u["label_a"] for u in context.units}
        labels.update({u["j"]: u["label_b"] for u in context.units})
        return {"models": [labels[i] for i in sorted(labels)]}

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.models.features import layer_features
        from leafscope.nnk.graph import NNKGraph
        from leafscope.nnk.metrics import manifold_graph_metrics
        from leafscope.nnk.stability import edge_overlap, knn_adjacency, mgm_distances

        p: StabilityParams = self.params
        device = context.device
        x, _ = _nnk.sample_points(context, p.points)
        n = x.shape[0]
        units = [context.units[pos] for pos in positions]
        graphs: dict[tuple[str, str], tuple[Any, Any]] = {}

        def graph(role: str, layer: str) -> tuple[Any, Any]:
            if (role, layer) not in graphs:
                feats = layer_features(context.model(role), x, [layer], device=device)[layer]
                g = NNKGraph(k=min(p.k, n - 1), kernel=p.kernel, device=str(device)).fit(feats)
                graphs[role, layer] = (g, manifold_graph_metrics(g, orientation=p.orientation))
            return graphs[role, layer]

        compared = [m for m in METRICS if p.orientation or m != "orientation"]
        rows: dict[str, list] = {c: [] for c in self.columns}
        for pos, unit in zip(positions, units, strict=True):
            (ga, ma), (gb, mb) = graph(unit["a"], unit["layer"]), graph(unit["b"], unit["layer"])
            nnk = edge_overlap(ga, gb)
            knn = edge_overlap(knn_adjacency(ga), knn_adjacency(gb))
            distances = mgm_distances(ma, mb)
            means = [{m: float(np.nanmean(getattr(mm, m))) for m in compared} for mm in (ma, mb)]
            rows["unit"].append(pos)
            rows["a"].append(unit["label_a"])
            rows["b"].append(unit["label_b"])
            rows["layer"].append(unit["layer"])
            rows["nnk_jaccard"].append(nnk.jaccard)
            rows["knn_jaccard"].append(knn.jaccard)
            rows["nnk_chance"].append(nnk.chance)
            rows["nnk_edges_a"].append(nnk.edges_a)
            rows["nnk_edges_b"].append(nnk.edges_b)
            rows["nnk_common"].append(nnk.common)
            for metric in METRICS:
                value = distances.get(metric, {}).get("wasserstein")
                rows[f"{metric}_wasserstein"].append(_nnk.nan_if_none(value))
            rows["result"].append(
                _nnk.json_cell(
                    {
                        "nnk_overlap": dataclasses.asdict(nnk),
                        "knn_overlap": dataclasses.asdict(knn),
                        "mgm_distances": distances,
                        "mgm_means": means,
                    }
                )
            )
        out = {k: np.asarray(v) for k, v in rows.items()}
        for name in ("unit", "nnk_edges_a", "nnk_edges_b", "nnk_common"):
            out[name] = out[name].astype(np.int64)
        return out

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        layers = rows_to_layers(rows, context)
        return {
            "models": list(context.meta.get("models", [])),
            "points": self.params.points,
            "layers": {name: layer.summary() for name, layer in layers.items()},
        }

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        p: StabilityParams = self.params
        layers = rows_to_layers(rows, context)
        return {
            "models": list(context.meta.get("models", [])),
            "points": p.points,
            "k": p.k,
            "kernel": p.kernel,
            "layers": {name: layer.to_json() for name, layer in layers.items()},
        }

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = [f"stability of {len(summary['models'])} models: {', '.join(summary['models'])}"]
        for name, s in summary["layers"].items():
            lines.append(
                f"{name}: NNK edge Jaccard {s['nnk_jaccard']:.3f} (kNN {s['knn_jaccard']:.3f}, "
                f"chance {s['nnk_chance']:.4f}); W1 neighbours "
                f"{s.get('n_neighbors_wasserstein', float('nan')):.3f}, diameter "
                f"{s.get('diameter_wasserstein', float('nan')):.4f}, local dim "
                f"{s.get('local_dim_wasserstein', float('nan')):.3f}"
            )
        return lines


def rows_to_layers(rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
    """``{layer: LayerStability}`` of the rows (pairs as indices into the job's models)."""
    from leafscope.nnk.stability import EdgeOverlap, LayerStability

    out: dict[str, LayerStability] = {}
    means: dict[str, dict[int, dict[str, float]]] = {}
    for i in np.argsort(np.asarray(rows["unit"]), kind="stable"):
        unit = context.units[int(rows["unit"][i])]
        result = json.loads(str(rows["result"][i]))
        name = unit["layer"]
        layer = out.setdefault(name, LayerStability(name, [], [], [], []))
        layer.pairs.append((int(unit["i"]), int(unit["j"])))
        layer.nnk_overlap.append(EdgeOverlap(**result["nnk_overlap"]))
        layer.knn_overlap.append(EdgeOverlap(**result["knn_overlap"]))
        layer.mgm_distances.append(result["mgm_distances"])
        for index, value in zip((unit["i"], unit["j"]), result["mgm_means"], strict=True):
            means.setdefault(name, {})[int(index)] = value
    for name, layer in out.items():
        layer.mgm_means = [means[name][i] for i in sorted(means[name])]
    return out
