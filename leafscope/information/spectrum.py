"""Per-point spectra of G over a data set, and the summary columns of the transfer table.

Summary columns (theory §3): medians over points of log10 λ_1 (highest), log10 λ_{C-1}
(lowest nonzero), the per-point difference Δ = log10 λ_1 − log10 λ_{C-1}, and log10 tr G.
Eigenvalues are clamped at ``LOG10_FLOOR`` before the logarithm.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from leafscope.dtypes import accumulation_dtype, check_compute_dtype
from leafscope.errors import InputError
from leafscope.information.jacobian import reference_model
from leafscope.information.matrices import DataInformation

__all__ = ["LOG10_FLOOR", "PointSpectra", "SpectrumSummary", "point_spectra", "summarize_spectra"]

LOG10_FLOOR = 1e-23


@dataclass(frozen=True)
class SpectrumSummary:
    """Medians over points (numpy convention: the mean of the two middle values for an even
    count) of base-10 logarithms of eigenvalues in 1/input-unit²."""

    median_log10_highest: float
    median_log10_lowest: float
    median_delta: float
    median_log10_trace: float

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PointSpectra:
    """Spectra of G at N points.

    Attributes:
        eigenvalues: ``(N, C-1)`` float64, descending.
        trace: ``(N,)`` float64.
        rank: ``(N,)`` numerical rank (default tolerance of :meth:`InformationMatrix.rank`).
        predicted: ``(N,)`` predicted class.
        max_probability: ``(N,)`` largest class probability.
        diagonal: ``(N, *shape)`` float64 diagonal of G (``G_jj = Σ_i A_ij²``, its sum is the
            trace: how much of the trace each input coordinate holds), when asked for.
        compute_dtype: the dtype of the forward and the Jacobian.
        accumulation_dtype: the dtype of the factor and its SVD.
    """

    eigenvalues: Tensor
    trace: Tensor
    rank: Tensor
    predicted: Tensor
    max_probability: Tensor
    diagonal: Tensor | None = None
    compute_dtype: torch.dtype = torch.float64
    accumulation_dtype: torch.dtype = field(default=torch.float64)

    def log10_eigenvalues(self) -> Tensor:
        return self.eigenvalues.clamp_min(LOG10_FLOOR).log10()

    def log10_trace(self) -> Tensor:
        return self.trace.clamp_min(LOG10_FLOOR).log10()

    def summary(self) -> SpectrumSummary:
        return summarize_spectra(self.eigenvalues, self.trace)

    def to_points(self) -> list[dict]:
        """One JSON-able record per point."""
        logs, log_tr = self.log10_eigenvalues(), self.log10_trace()
        return [
            {
                "log10_eigenvalues": logs[i].tolist(),
                "log10_trace": float(log_tr[i]),
                "rank": int(self.rank[i]),
                "predicted": int(self.predicted[i]),
                "max_probability": float(self.max_probability[i]),
            }
            for i in range(len(self.trace))
        ]


def summarize_spectra(eigenvalues: Tensor, trace: Tensor) -> SpectrumSummary:
    """Median columns of the transfer table from eigenvalues ``(N, C-1)`` and traces ``(N,)``.

    Medians follow numpy (:func:`numpy.median`): for an even N, the mean of the two middle
    values, as in the published tables (``torch.median`` would give the lower one).
    """
    if eigenvalues.dim() != 2 or eigenvalues.shape[0] != trace.shape[0] or trace.numel() == 0:
        raise InputError(
            f"need eigenvalues (N, C-1) and traces (N,) with N >= 1 (got "
            f"{tuple(eigenvalues.shape)} and {tuple(trace.shape)})"
        )
    logs = eigenvalues.detach().double().cpu().clamp_min(LOG10_FLOOR).log10().numpy()
    highest, lowest = logs[:, 0], logs[:, -1]
    log_trace = trace.detach().double().cpu().clamp_min(LOG10_FLOOR).log10().numpy()
    return SpectrumSummary(
        median_log10_highest=float(np.median(highest)),
        median_log10_lowest=float(np.median(lowest)),
        median_delta=float(np.median(highest - lowest)),
        median_log10_trace=float(np.median(log_trace)),
    )


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _on(model: nn.Module, device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    """``model`` itself when its floating parameters and buffers already have ``device`` and
    ``dtype``, else a copy moved there (the caller's model is never modified)."""
    device = torch.device(device)
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if all(t.dtype == dtype and t.device.type == device.type for t in tensors) and all(
        device.index is None or t.device.index == device.index for t in tensors
    ):
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def point_spectra(
    model: nn.Module,
    x: Tensor,
    *,
    batch_size: int = 64,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    rtol: float | None = None,
    progress: bool = False,
    diagonal: bool = False,
    attention: str = "auto",
    probs_model: nn.Module | None = None,
) -> PointSpectra:
    """Spectrum of G at every point of ``x`` ``(N, *shape)``, computed in batches.

    Args:
        model: classifier returning logits (N, C).
        x: points, e.g. images (N, 1, 28, 28) in [0, 1].
        batch_size: points per vectorised batch.
        dtype: compute dtype (float64 by default: small eigenvalues need it); bfloat16 and
            float16 run the forward and the Jacobian in low precision and the factor's SVD in
            float32.
        device: where to compute (default: the model's device).
        rtol: rank tolerance (see :meth:`InformationMatrix.rank`).
        progress: show a progress bar.
        diagonal: also return the diagonal of G at each point (``PointSpectra.diagonal``).
        attention: route of scaled-dot-product attention
            (:func:`~leafscope.information.jacobian.attention_route`).
        probs_model: in low precision, the float32 model whose logits give p (default: the
            model cast to float32, once).

    Returns:
        :class:`PointSpectra` with CPU float64 tensors.

    Examples:
        >>> from leafscope.testing import tiny_mlp
        >>> s = point_spectra(tiny_mlp(n_in=12, n_classes=4), torch.rand(10, 12), batch_size=4)
        >>> s.eigenvalues.shape, bool(torch.allclose(s.eigenvalues.sum(1), s.trace))
        (torch.Size([10, 3]), True)
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1 (got {batch_size})")
    if device is None:
        device = _model_device(model)
    check_compute_dtype(dtype)
    work = _on(model, device, dtype)
    reference = reference_model(model, dtype, probs_model)
    if reference is not None:
        reference = _on(reference, device, torch.float32)
    parts: dict[str, list[Tensor]] = {k: [] for k in ("ev", "tr", "rk", "pr", "mp", "dg")}
    starts = range(0, x.shape[0], batch_size)
    for start in tqdm(starts, desc="spectra", unit="batch", disable=not progress):
        # in low precision the batch stays float32 here: DataInformation rounds it for the
        # Jacobian and gives the unrounded points to the float32 model for p
        batch = x[start : start + batch_size].to(
            device=device, dtype=dtype if reference is None else torch.float32
        )
        info = DataInformation(work, batch, dtype=dtype, attention=attention, probs_model=reference)
        rank = info.rank(rtol)
        parts["ev"].append(rank.eigenvalues.double().cpu())
        parts["tr"].append(info.trace().double().cpu())
        parts["rk"].append(rank.rank.cpu())
        parts["pr"].append(info.predicted.cpu())
        parts["mp"].append(info.probs.max(dim=1).values.double().cpu())
        if diagonal:
            diag = info.factor.pow(2).sum(dim=1).reshape(batch.shape)
            parts["dg"].append(diag.double().cpu())
        del info
    ev, tr, rk, pr, mp = (torch.cat(parts[k]) for k in ("ev", "tr", "rk", "pr", "mp"))
    diag = torch.cat(parts["dg"]) if diagonal else None
    return PointSpectra(ev, tr, rk, pr, mp, diag, dtype, accumulation_dtype(dtype))
