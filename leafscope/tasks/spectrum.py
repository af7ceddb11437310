"""``spectrum``: eigenvalues, trace and rank of G at the selected points of a data set.

One row per point: its data index and label, the prediction, the C-1 nonzero eigenvalues of
G(x) (descending, float64 by default) and their log10, the trace and the numerical rank. With
``top_k`` the K largest eigenvalues come matrix-free (block Lanczos through jvp/vjp) with a
certified error bound each, and no trace. The points are decoded and their Jacobian factors
held one batch at a time; the batch is sized from ``memory_mb`` unless given.

Texts (a text point set and a text classifier, :mod:`leafscope.models.text`): G is taken in
the input word embeddings of each text's own tokens (no padding; texts of equal length share a
vectorised batch), and ``token_shares`` holds, per text, each token with its share of the trace
(the diagonal of G summed over the token's embedding coordinates, divided by the trace).
``dtype`` bfloat16 / float16 runs the forward and the Jacobian products in low precision with
the factor, its Gram and eigenproblem in float32; the result records both dtypes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from leafscope.dtypes import COMPUTE_DTYPES, accumulation_dtype, dtype_name
from leafscope.errors import InputError
from leafscope.tasks.base import Context, Params, Task, concat_rows, param, register_task

__all__ = ["SpectrumParams", "SpectrumTask", "auto_batch_size", "rows_to_points"]

LOG_FLOOR = 1e-23  # log10 of eigenvalues is clamped here (as summarize_spectra does)
TRACE_ESTIMATORS = ("exact", "hutchinson")


def point_seed(seed: int, index: int) -> int:
    """The seed of the random draws of data point ``index`` (the same in any batch or shard)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def auto_batch_size(num_classes: int, input_numel: int, dtype: torch.dtype, memory_mb: int) -> int:
    """Points per batch whose Jacobian factors fit in ``memory_mb``: the C x n Jacobian, the
    factor A and their autograd temporaries take about four C x n arrays per point."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    per_point = 4 * max(num_classes, 1) * max(input_numel, 1) * itemsize
    return int(max(1, min(256, (memory_mb * 2**20) // per_point)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpectrumParams(Params):
    """Parameters of :class:`SpectrumTask`."""

    dtype: str = param(
        "float64",
        help="compute dtype of the forward and the Jacobian products (bfloat16/float16: the "
        "Gram and its eigenproblem in float32)",
        choices=tuple(COMPUTE_DTYPES),
    )
    batch_size: int | None = param(
        None, help="points per vectorised batch (default: sized from memory_mb)"
    )
    memory_mb: int = param(
        1024, help="memory budget of one batch of Jacobian factors, in MiB (sizes the batch)"
    )
    rtol: float | None = param(None, help="rank tolerance relative to the largest eigenvalue")
    top_k: int | None = param(
        None, help="only the K largest eigenvalues, matrix-free, each with an error bound"
    )
    trace_estimator: str = param(
        "exact",
        help="exact: tr G from the factor (C backward passes; none with top_k); hutchinson: "
        "also an unbiased estimate from `probes` vjps with its standard error",
        choices=TRACE_ESTIMATORS,
    )
    probes: int = param(64, help="Hutchinson probes per point (one vjp each)")
    seed: int = param(0, help="seed of the Hutchinson probes and of the top-k start block")

    def validate(self) -> None:
        if self.dtype not in COMPUTE_DTYPES:
            raise InputError(
                f"unknown dtype {self.dtype!r}: use one of {', '.join(COMPUTE_DTYPES)}"
            )
        if self.trace_estimator not in TRACE_ESTIMATORS:
            raise InputError(
                f"unknown trace_estimator {self.trace_estimator!r}: use one of "
                f"{', '.join(TRACE_ESTIMATORS)}"
            )
        if self.trace_estimator == "hutchinson" and self.probes < 2:
            raise InputError(f"probes must be >= 2 for a standard error (got {self.probes})")
        for name in ("batch_size", "memory_mb", "top_k", "probes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be >= 1 (got {value})")


@register_task
class SpectrumTask(Task):
    """Spectra of the data information matrix G at the selected points."""

    name = "spectrum"
    accepts_texts = True
    Params = SpectrumParams
    summary = "eigenvalues, trace and rank of G at the points of a data set"
    description = (
        "Spectrum of the data information matrix G at the selected points (a seeded sample "
        "stratified by label, or exact indices). Rows: per point the C-1 nonzero eigenvalues "
        "(descending) and their log10, trace, rank, predicted class and max probability; "
        "summary medians. With top_k: the K largest eigenvalues matrix-free with error bounds."
    )
    columns = (
        "unit",
        "index",
        "label",
        "predicted",
        "max_probability",
        "eigenvalues",
        "log10_eigenvalues",
        "error_bounds",
        "converged",
        "trace",
        "log10_trace",
        "rank",
        "trace_estimate",
        "trace_stderr",
        "token_shares",
    )

    def prepare(self, context: Context) -> dict[str, Any]:
        data = context.data()
        x, _ = data.take([0])
        with torch.no_grad():
            logits = context.model()(x.to(context.device))
        num_classes = int(logits.shape[-1])
        p: SpectrumParams = self.params
        if p.top_k is not None and p.top_k > num_classes - 1:
            raise InputError(
                f"top_k {p.top_k} exceeds C - 1 = {num_classes - 1}, the largest rank G can have"
            )
        numel = int(np.prod(data.input_shape))
        if getattr(data, "is_text", False):  # the longest text the model takes
            model = context.model()
            numel = int(getattr(model, "max_length", 512)) * int(model.embedding_dim)
        batch = p.batch_size or auto_batch_size(
            num_classes, numel, COMPUTE_DTYPES[p.dtype], p.memory_mb
        )
        return {"num_classes": num_classes, "batch_size": batch}

    def compute(self, positions: Sequence[int], context: Context) -> dict[str, np.ndarray]:
        from leafscope.information import cast_model, reference_model

        model, data = context.model(), context.data()
        batch = int(context.meta["batch_size"])
        dtype = COMPUTE_DTYPES[self.params.dtype]
        # cast once per block of rows: the model in the compute dtype, and in low precision the
        # float32 model whose logits give p
        models = (cast_model(model, dtype), reference_model(model, dtype))
        parts = []
        for block, indices, x, y in context.point_batches(positions, batch):
            if getattr(data, "is_text", False):
                parts.append(self._text_rows(models, x, y, block, indices, context.device))
            else:
                part = self._rows(models, x, y, block, indices, context.device)
                part["token_shares"] = np.full(len(block), "", dtype=object)
                parts.append(part)
        return concat_rows(parts)

    def _text_rows(self, models, texts, y, block, indices, device) -> dict[str, np.ndarray]:
        """Rows of texts: each text at its own length (no padding), texts of one length in one
        batch of input word embeddings; rows back in the order of ``block``."""
        work, reference = models
        base = reference if reference is not None else work  # embeddings at full precision
        tokenized = [base.tokenize(t) for t in texts]
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(tokenized):
            groups.setdefault(len(t), []).append(i)
        parts, order = [], []
        for members in groups.values():
            embeds = base.embed(torch.stack([tokenized[i].input_ids for i in members]))
            part = self._rows(
                models,
                embeds,
                y[members],
                [block[i] for i in members],
                [indices[i] for i in members],
                device,
                diagonal=True,
            )
            shares = part.pop("diagonal")
            part["token_shares"] = np.array(
                [
                    _token_shares(tokenized[i].tokens, shares[j], part["trace"][j])
                    for j, i in enumerate(members)
                ],
                dtype=object,
            )
            parts.append(part)
            order.extend(members)
        rows = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
        back = np.argsort(np.asarray(order), kind="stable")
        return {k: v[back] for k, v in rows.items()}

    def _rows(
        self, models, x, y, block, indices, device, diagonal: bool = False
    ) -> dict[str, np.ndarray]:
        from leafscope.information import point_spectra, top_eigenvalues, trace_estimate

        p: SpectrumParams = self.params
        work, reference = models
        dtype = COMPUTE_DTYPES[p.dtype]
        n = len(block)
        common = {
            "unit": np.asarray(block, dtype=np.int64),
            "index": np.asarray(indices, dtype=np.int64),
            "label": y.numpy().astype(np.int64),
            "trace_estimate": np.full(n, np.nan),
            "trace_stderr": np.full(n, np.nan),
        }
        x = x.to(device)
        if p.trace_estimator == "hutchinson":
            est = trace_estimate(
                work,
                x,
                probes=p.probes,
                dtype=dtype,
                point_seeds=[point_seed(p.seed, i) for i in indices],
                probs_model=reference,
            )
            common["trace_estimate"] = est.estimate.double().cpu().numpy()
            common["trace_stderr"] = est.stderr.double().cpu().numpy()
        if p.top_k is not None:
            spec = top_eigenvalues(
                work, x, p.top_k, dtype=dtype, seed=p.seed, probs_model=reference
            )
            values = spec.eigenvalues.double().cpu()
            return {
                **common,
                "predicted": spec.predicted.cpu().numpy().astype(np.int64),
                "max_probability": spec.probs.double().max(dim=1).values.cpu().numpy(),
                "eigenvalues": values.numpy(),
                "log10_eigenvalues": values.clamp_min(LOG_FLOOR).log10().numpy(),
                "error_bounds": spec.error_bounds.double().cpu().numpy(),
                "converged": spec.converged.cpu().reshape(n, -1).all(dim=1).numpy(),
                "trace": np.full(n, np.nan),
                "log10_trace": np.full(n, np.nan),
                "rank": np.full(n, -1, dtype=np.int64),
                **({"diagonal": np.full((n, 0), np.nan)} if diagonal else {}),
            }
        spectra = point_spectra(
            work,
            x,
            batch_size=n,
            dtype=dtype,
            device=device,
            rtol=p.rtol,
            diagonal=diagonal,
            probs_model=reference,
        )
        values = spectra.eigenvalues
        extra = {}
        if diagonal:  # per token: the diagonal summed over the embedding coordinates
            extra["diagonal"] = spectra.diagonal.reshape(n, x.shape[1], -1).sum(-1).numpy()
        return {
            **extra,
            **common,
            "predicted": spectra.predicted.numpy().astype(np.int64),
            "max_probability": spectra.max_probability.numpy(),
            "eigenvalues": values.numpy(),
            "log10_eigenvalues": spectra.log10_eigenvalues().numpy(),
            "error_bounds": np.zeros(tuple(values.shape)),
            "converged": np.ones(values.shape[0], dtype=bool),
            "trace": spectra.trace.numpy(),
            "log10_trace": spectra.log10_trace().numpy(),
            "rank": spectra.rank.numpy().astype(np.int64),
        }

    def summarize(self, rows: Mapping[str, np.ndarray], context: Context) -> dict[str, Any]:
        summary = self._summary(rows)
        if self.params.trace_estimator == "hutchinson":
            estimate = np.asarray(rows["trace_estimate"], dtype=np.float64)
            stderr = np.asarray(rows["trace_stderr"], dtype=np.float64)
            summary["median_log10_trace_estimate"] = float(
                np.median(np.log10(np.clip(estimate, LOG_FLOOR, None)))
            )
            summary["median_relative_stderr"] = float(
                np.median(stderr / np.clip(np.abs(estimate), np.finfo(float).tiny, None))
            )
        return summary

    def _summary(self, rows: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.params.top_k is not None:
            logs = np.asarray(rows["log10_eigenvalues"], dtype=np.float64)
            return {
                "median_log10_highest": float(np.median(logs[:, 0])),
                "median_log10_lowest": float(np.median(logs[:, -1])),
                "median_delta": float(np.median(logs[:, 0] - logs[:, -1])),
                "median_log10_trace": None,
            }
        from leafscope.information import summarize_spectra

        return summarize_spectra(
            torch.from_numpy(np.array(rows["eigenvalues"], dtype=np.float64)),
            torch.from_numpy(np.array(rows["trace"], dtype=np.float64)),
        ).to_json()

    def payload(
        self, rows: Mapping[str, np.ndarray], summary: Mapping[str, Any], context: Context
    ) -> dict[str, Any]:
        compute = COMPUTE_DTYPES[self.params.dtype]
        return {
            "dtype": self.params.dtype,
            "dtypes": {
                "forward_and_jacobian": dtype_name(compute),
                "probabilities": dtype_name(accumulation_dtype(compute)),
                "factor_gram_and_eigenproblem": dtype_name(accumulation_dtype(compute)),
                "rows": "float64",
            },
            "top_k": self.params.top_k,
            "trace_estimator": self.params.trace_estimator,
            "probes": self.params.probes if self.params.trace_estimator == "hutchinson" else None,
            "points": rows_to_points(rows, top_k=self.params.top_k is not None),
        }


def rows_to_points(rows: Mapping[str, np.ndarray], *, top_k: bool = False) -> list[dict]:
    """Per-point JSON records (the ``points`` of ``spectrum --json``)."""
    out = []
    for i in range(len(rows["unit"])):
        record = {
            "index": int(rows["index"][i]),
            "label": int(rows["label"][i]),
            "predicted": int(rows["predicted"][i]),
            "max_probability": float(rows["max_probability"][i]),
            "log10_eigenvalues": np.asarray(rows["log10_eigenvalues"][i]).tolist(),
        }
        if "trace_estimate" in rows and np.isfinite(rows["trace_estimate"][i]):
            record["trace_estimate"] = float(rows["trace_estimate"][i])
            record["trace_stderr"] = float(rows["trace_stderr"][i])
        shares = rows["token_shares"][i] if "token_shares" in rows else ""
        if isinstance(shares, str) and shares:
            record["token_shares"] = json.loads(shares)
        if top_k:
            record["error_bounds"] = np.asarray(rows["error_bounds"][i]).tolist()
            record["converged"] = bool(rows["converged"][i])
        else:
            record["log10_trace"] = float(rows["log10_trace"][i])
            record["rank"] = int(rows["rank"][i])
        out.append(record)
    return out


def _token_shares(tokens: Sequence[str], per_token: np.ndarray, trace: float) -> str:
    """JSON ``[[token, share], ...]``: each token's part of the trace (the diagonal of G summed
    over its embedding coordinates, over tr G); the shares sum to 1 (``[]`` for top_k rows)."""
    values = np.asarray(per_token, dtype=np.float64).reshape(-1)
    if values.size != len(tokens) or not np.isfinite(trace) or trace <= 0:
        return "[]"
    return json.dumps([[t, float(v / trace)] for t, v in zip(tokens, values, strict=True)])
