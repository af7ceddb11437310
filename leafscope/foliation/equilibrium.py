"""The information matrix during training: trace and rank of G across checkpoints.

The talk's "information at equilibrium": as training saturates the softmax (p nearly one-hot),
``G = Jᵀ M(p) J`` collapses toward 0 on the training data, so the trace falls and the rank at a
fixed absolute tolerance drops. This module measures both on the same images for every checkpoint
of a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from leafscope.errors import InputError
from leafscope.information import DataInformation, check_inputs

__all__ = ["TraceRankResult", "trace_rank_across_checkpoints"]


@dataclass
class TraceRankResult:
    """Trace and rank of G at N images for K checkpoints.

    Attributes:
        checkpoints: the K checkpoint paths (as strings).
        epochs / steps: training progress of each checkpoint.
        val_accuracy: validation accuracy stored in each checkpoint (None when absent).
        traces: ``(K, N)`` ``tr G`` (1/input-unit², inputs in [0, 1]).
        ranks: ``(K, N)`` number of eigenvalues above ``atol`` (absolute).
        relative_ranks: ``(K, N)`` numerical rank with the relative rule ``σ > rtol·σ_max``.
        eigenvalues: ``(K, N, C-1)`` descending.
        atol / rtol: the tolerances.
    """

    checkpoints: list[str]
    epochs: list[int]
    steps: list[int]
    val_accuracy: list[float | None]
    traces: Tensor
    ranks: Tensor
    relative_ranks: Tensor
    eigenvalues: Tensor
    atol: float
    rtol: float

    def rank_histogram(self) -> Tensor:
        """``(K, C)`` counts of points with rank 0..C-1 (absolute tolerance) per checkpoint."""
        c = self.eigenvalues.shape[2] + 1
        return torch.stack([torch.bincount(r, minlength=c)[:c] for r in self.ranks])

    def to_json(self) -> dict:
        log_tr = torch.log10(self.traces.clamp_min(1e-300))
        hist = self.rank_histogram()
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "checkpoints": [
                {
                    "path": self.checkpoints[k],
                    "epoch": self.epochs[k],
                    "step": self.steps[k],
                    "val_accuracy": self.val_accuracy[k],
                    "median_trace": float(np.median(self.traces[k].cpu().numpy())),
                    "mean_trace": float(self.traces[k].mean()),
                    "log10_trace_quartiles": torch.quantile(
                        log_tr[k], torch.tensor([0.25, 0.5, 0.75], dtype=log_tr.dtype)
                    ).tolist(),
                    "mean_rank": float(self.ranks[k].double().mean()),
                    "mean_relative_rank": float(self.relative_ranks[k].double().mean()),
                    "rank_histogram": hist[k].tolist(),
                }
                for k in range(len(self.checkpoints))
            ],
        }


def trace_rank_across_checkpoints(
    checkpoints: list[str | os.PathLike],
    images: Tensor,
    *,
    atol: float = 1e-8,
    rtol: float = 1e-4,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    chunk_size: int | None = 64,
) -> TraceRankResult:
    """Trace and rank distribution of ``G(x, w_k)`` on fixed ``images`` for each checkpoint ``w_k``.

    Args:
        checkpoints: checkpoint files written by :func:`leafscope.training.fit` (any order; the
            result is sorted by step).
        images: ``(N, *shape)`` points, e.g. 200 training images in [0, 1].
        atol: absolute eigenvalue tolerance of ``ranks`` (eigenvalues in 1/input-unit²).
        rtol: relative tolerance (on singular values of the factor) of ``relative_ranks``.
        dtype: computation dtype (float64 recommended).
        device: where to evaluate.
        chunk_size: samples per vectorised Jacobian chunk.

    Returns:
        :class:`TraceRankResult`.
    """
    from leafscope.models.checkpoint import checkpoint_val_accuracy as _val_accuracy
    from leafscope.training import load_checkpoint, read_checkpoint

    if not checkpoints:
        raise InputError("no checkpoints given: pass the epoch_NNNN.pt files of a run")
    check_inputs(images, "images")
    if not atol > 0:
        raise InputError(f"atol must be > 0 (got {atol})")
    rows = []
    for path in checkpoints:
        data = read_checkpoint(path)
        model = load_checkpoint(path, device=device)
        info = DataInformation(model, images.to(device), dtype=dtype, chunk_size=chunk_size)
        ev = info.eigenvalues().cpu()
        rows.append(
            (
                int(data["step"]),
                int(data["epoch"]),
                str(Path(path)),
                _val_accuracy(data),
                info.trace().cpu(),
                (ev > atol).sum(dim=1),
                info.rank(rtol).rank.cpu(),
                ev,
            )
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    return TraceRankResult(
        checkpoints=[r[2] for r in rows],
        epochs=[r[1] for r in rows],
        steps=[r[0] for r in rows],
        val_accuracy=[r[3] for r in rows],
        traces=torch.stack([r[4] for r in rows]),
        ranks=torch.stack([r[5] for r in rows]),
        relative_ranks=torch.stack([r[6] for r in rows]),
        eigenvalues=torch.stack([r[7] for r in rows]),
        atol=atol,
        rtol=rtol,
    )
