"""``involutivity``: is D_x = span{∇x p_a} involutive? Lie brackets at the selected points.

One row per point: the ranks of the C fields and of fields and brackets stacked (at ``rtol``),
the largest gap of the stacked singular values, all singular values (float64, descending) and
the compute time. The points are uniform noise in [0, 1) of the data set's point shape (as
published: point number p of ``torch.rand((N, *shape))`` seeded ``seed``, whatever the shards),
or the selected points of the data set (for noise only the data set's point shape and the
number of points are used; ``index`` is then the draw number). With ``fisher_points`` the first
points also get the same test for the Fisher distribution in parameter space (columns
``fisher_*``; NaN in the rows of the other points).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leafscope.errors import InputError
from leafscope.tasks.base import Context, Params, Task, param, register_task

__all__ = ["INPUTS", "InvolutivityParams", "InvolutivityTask", "noise_points", "result_of"]

INPUTS = ("noise", "data")
#: Points decoded and tested together (the brackets of a block are held in memory at once).
BLOCK = 32
#: Most trainable parameters of the Fisher test (its stacked matrix is (C + C(C-1)/2) x P).
MAX_FISHER_PARAMETERS = 200_000


def noise_points(seed: int, shape: tuple[int, ...], positions: Sequence[int]) -> Tensor:
    """Points ``positions`` of ``torch.rand((N, *shape))`` drawn from a generator seeded
    ``seed``, for any N above them (the CPU generator fills a tensor in order, so drawing the
    first ``max(positions) + 1`` points gives the same values)."""
    gen = torch.Generator().manual_seed(int(seed))
    stop = max(positions) + 1
    return torch.rand((stop, *shape), generator=gen)[torch.as_tensor(list(positions))]


@dataclasses.dataclass(frozen=True, kw_only=True)
class InvolutivityParams(Params):
    """Parameters of :class:`InvolutivityTask`.

    Attributes:
        inputs: ``noise`` (uniform [0, 1) points of the data set's shape, as published) or
            ``data`` (the selected points of the data set).
        seed: seed of the noise points.
        rtol: relative rank tolerance: singular values above ``rtol * sigma_max`` count.
        chunk_size: points per vectorised chunk of the bracket computation (bounds memory).
        fisher_points: also test the Fisher distribution in parameter space at the first this
            many points (0: not).
        fisher_parameters: names of the parameters spanning parameter space for the Fisher test
            (None: every trainable one; large models need a subset such as the last layer).
    """

    inputs: str = param("noise", help="the points: noise (uniform [0,1), as published) or data",
                        choices=INPUTS)  # fmt: skip
    seed: int = param(0, help="seed of the noise points")
    rtol: float = param(1e-10, help="relative rank tolerance (float64 singular values)")
    chunk_size: int = param(4, help="points per vectorised chunk of the brackets")
    fisher_points: int = param(
        0, help="also test the Fisher distribution in parameter space at this many points"
    )
    fisher_parameters: tuple[str, ...] | None = param(
        None,
        help="comma-separated parameter names for the Fisher test (default: all trainable; "
        "large models need a subset, e.g. fc2.weight,fc2.bias)",
    )

    def validate(self) -> None:
        if self.inputs not in INPUTS:
            raise InputError(f"inputs must be noise or data (got {self.inputs!r})")
        if not (isinstance(self.rtol, (int, float)) and 0 < self.rtol < 1):
            raise InputError(f"rtol must be in (0, 1) (got {self.rtol!r}); 1e-10 suits float64")
        if self.chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1 (got {self.chunk_size})")
        if self.fisher_points < 0:
            raise InputError(f"fisher_points must be >= 0 (got {self.fisher_points})")
        if self.fisher_parameters is not None and not self.fisher_parameters:
            raise InputError("fisher_parameters must name at least one parameter (or be None)")


@register_task
class InvolutivityTask(Task):
    """The Frobenius test of the distribution D_x by Lie brackets at the selected points."""

    name = "involutivity"
    Params = InvolutivityParams
    default_points = 20
    summary = "Frobenius test: rank of span{D_x, [D_x, D_x]} by Lie brackets (float64)"
    description = (
        "Per point: dim D_x and dim span{D_x, [D_x, D_x]} (singular values of the stacked "
        "fields and brackets, rank at rtol), brackets by forward-over-reverse Hessian-vector "
        "products. The points are uniform noise in [0, 1) of the data set's point shape "
        "(inputs noise, the default: noise point p is row p of torch.rand((N, *shape)) seeded "
        "--seed) or the selected points of the data set (inputs data). Optionally the same "
        "test for the Fisher distribution in parameter space at the first --fisher-points "
        "points."
    )
    columns = (
        "unit",
        "index",
        "label",
        "dim_distribution",
        "dim_with_brackets",
        "largest_gap_index",
        "largest_gap_log10",
        "fields_singular_values",
        "singular_values",
        "seconds",
        "fisher_fields_singular_values",
        "fisher_singular_values",
    )

    def prepare(self, context: Context) -> dict[str, Any]:
        p: InvolutivityParams = self.params
        model, data = context.model(), context.data()
        num_classes = context.num_classes()
        meta: dict[str, Any] = {
            "num_classes": num_classes,
            "shape": list(data.input_shape),
            "fisher_points": min(p.fisher_points, len(context.units)),
            "fisher_widths": [1, 1],  # NaN rows (the shard writer takes no 0-wide columns)
        }
        stacked = num_classes + num_classes * (num_classes - 1) // 2
        if p.fisher_points:
            count = self._fisher_parameter_count(model)
            meta["fisher_widths"] = [min(num_classes, count), min(stacked, count)]
        return meta

    def _fisher_parameter_count(self, model: torch.nn.Module) -> int:
        p: InvolutivityParams = self.params
        named = dict(model.named_parameters())
        names = p.fisher_parameters
        if names is None:
            names = tuple(k for k, v in named.items() if v.requires_grad)
        unknown = [k for k in names if k not in named]
        if unknown:
            raise InputError(
                f"fisher_parameters: unknown parameter names {unknown}: the model has "
                f"{sorted(named)[:20]}"
            )
        if not names:
            raise InputError("the model has no trainable parameters: no Fisher test possible")
        count = sum(named[k].numel() for k in names)
        if count > MAX_FISHER_PARAMETERS:
            raise InputError(
                f"the Fisher test would span {count} parameters, above {MAX_FISHER_PARAMETERS}: "
                "name a subset in fisher_parameters (e.g. the last layer's weight and bias)"
            )
        return count

    def _points(self, positions: Sequence[int], context: Context) -> tuple[Tensor, Tensor, list]:
        """The points of ``positions``, their labels and their indices (the noise draw number
        for noise, the data index for data)."""
        p: InvolutivityParams = self.params
        if p.inputs == "noise":
            x = noise_points(p.seed, tuple(context.meta["shape"]), positions)
            return x, torch.full((len(positions),), -1, dtype=torch.long), list(positions)
        indices = [int(context.units[i]) for i in positions]
        x, y = context.data().take(indices)
        return x, y, indices

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        parts = [
            self._block(list(positions[s : s + BLOCK]), context)
            for s in range(0, len(positions), BLOCK)
        ]
        return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    def _block(self, block: list[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.foliation.brackets import fisher_involutivity, involutivity

        p: InvolutivityParams = self.params
        model = context.model()
        x, y, indices = self._points(block, context)
        t0 = time.perf_counter()
        res = involutivity(
            model, x.to(context.device), rtol=p.rtol, inputs=p.inputs, chunk_size=p.chunk_size
        )
        seconds = (time.perf_counter() - t0) / len(block)
        n = len(block)
        widths = context.meta["fisher_widths"]
        fisher_fields = np.full((n, widths[0]), np.nan)
        fisher_all = np.full((n, widths[1]), np.nan)
        take = [k for k, pos in enumerate(block) if pos < int(context.meta["fisher_points"])]
        if take:
            names = None if p.fisher_parameters is None else list(p.fisher_parameters)
            fres = fisher_involutivity(
                model, x[take].to(context.device), rtol=p.rtol, inputs=p.inputs, parameters=names,
                max_parameters=MAX_FISHER_PARAMETERS,
            )  # fmt: skip
            fisher_fields[take] = fres.fields_singular_values.double().numpy()
            fisher_all[take] = fres.singular_values.double().numpy()
        return {
            "unit": np.asarray(block, dtype=np.int64),
            "index": np.asarray(indices, dtype=np.int64),
            "label": y.numpy().astype(np.int64),
            "dim_distribution": np.asarray(res.dim_distribution, dtype=np.int64),
            "dim_with_brackets": np.asarray(res.dim_with_brackets, dtype=np.int64),
            "largest_gap_index": np.asarray([g[0] for g in res.largest_gap], dtype=np.int64),
            "largest_gap_log10": np.asarray([g[1] for g in res.largest_gap], dtype=np.float64),
            "fields_singular_values": res.fields_singular_values.double().numpy(),
            "singular_values": res.singular_values.double().numpy(),
            "seconds": np.full(n, seconds),
            "fisher_fields_singular_values": fisher_fields,
            "fisher_singular_values": fisher_all,
        }

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        summary = result_of(rows, context.meta, self.params).to_json()
        summary.pop("points")
        fisher = fisher_result_of(rows, context.meta, self.params)
        if fisher is not None:
            record = fisher.to_json()
            record.pop("points")
            summary["fisher"] = record
        return summary

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        points = result_of(rows, context.meta, self.params).to_json()["points"]
        for record, index, label in zip(points, rows["index"], rows["label"], strict=True):
            record["index"], record["label"] = int(index), int(label)
        out: dict[str, Any] = {"points": points}
        fisher = fisher_result_of(rows, context.meta, self.params)
        if fisher is not None:
            out["fisher_points"] = fisher.to_json()["points"]
        return out

    def terminal_lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = [
            f"input space, {summary['inputs']} points: mean dim D_x "
            f"{summary['mean_dim_distribution']:.2f}, mean dim span{{D, [D, D]}} "
            f"{summary['mean_dim_with_brackets']:.2f} (rtol {summary['rtol']:g}, ceiling "
            f"{summary['ceiling']}), {summary['seconds']:.1f} s",
            "  mean rank by rtol: "
            + ", ".join(f"{k}: {v:.2f}" for k, v in summary["rank_by_rtol"].items()),
        ]
        fisher = summary.get("fisher")
        if fisher:
            lines.append(
                f"parameter space: mean dim {fisher['mean_dim_distribution']:.2f}, with "
                f"brackets {fisher['mean_dim_with_brackets']:.2f} (ceiling {fisher['ceiling']})"
            )
        return lines


def result_of(rows: Mapping[str, np.ndarray], meta: Mapping[str, Any], params: Any) -> Any:
    """The :class:`leafscope.foliation.InvolutivityResult` of all rows (``seconds``: the
    summed compute time of the points)."""
    from leafscope.foliation.brackets import involutivity_result

    return involutivity_result(
        torch.from_numpy(np.array(rows["fields_singular_values"], dtype=np.float64)),
        torch.from_numpy(np.array(rows["singular_values"], dtype=np.float64)),
        rtol=params.rtol,
        num_classes=int(meta["num_classes"]),
        space="input",
        inputs=params.inputs,
        seconds=float(np.sum(rows["seconds"])),
    )


def fisher_result_of(rows: Mapping[str, np.ndarray], meta: Mapping[str, Any], params: Any) -> Any:
    """The parameter-space :class:`leafscope.foliation.InvolutivityResult` of the rows that
    carry the Fisher test (None when none does)."""
    from leafscope.foliation.brackets import involutivity_result

    fields = np.asarray(rows["fisher_fields_singular_values"], dtype=np.float64)
    stacked = np.asarray(rows["fisher_singular_values"], dtype=np.float64)
    if not int(meta.get("fisher_points", 0)) or fields.size == 0:
        return None
    keep = ~np.isnan(fields).any(axis=1)
    if not keep.any():
        return None
    return involutivity_result(
        torch.from_numpy(fields[keep].copy()),
        torch.from_numpy(stacked[keep].copy()),
        rtol=params.rtol,
        num_classes=int(meta["num_classes"]),
        space="parameter",
        inputs=params.inputs,
    )
