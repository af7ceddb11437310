"""The spectrum job at scale: spectra of G at many points, one task per shard, on any executor.

Each task (:class:`SpectrumTask`) names its model and data by spec and its points by index; the
worker loads both once (:mod:`leafscope.execution.specs`), computes the shard with
:func:`leafscope.information.point_spectra` (batch by batch: only one batch of factors lives at a
time) and writes the shard's Parquet file itself, or returns its rows when no folder is given.
The summary is computed from all rows (:func:`spectrum_summary`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leafscope.dtypes import DTYPES
from leafscope.errors import InputError
from leafscope.execution.executor import Executor, worker_device
from leafscope.execution.points import PointJobResult, ShardOutcome, run_shards
from leafscope.execution.results import ResultFolder, plan_shards
from leafscope.execution.specs import DataSpec, ModelSpec, cached_data, cached_model

__all__ = [
    "COLUMNS",
    "SpectrumJob",
    "SpectrumTask",
    "merge_spectrum",
    "rows_to_points",
    "run_spectrum_job",
    "spectrum_shard",
    "spectrum_summary",
]

#: Parquet columns of a spectrum shard, one row per point.
COLUMNS = (
    "index",
    "label",
    "predicted",
    "max_probability",
    "eigenvalues",
    "log10_eigenvalues",
    "trace",
    "log10_trace",
    "rank",
)


@dataclass(frozen=True)
class SpectrumTask:
    """One shard of a spectrum job (small and picklable: specs and indices only).

    Attributes:
        model: how to load the model.
        data: how to load the data.
        shard: shard number.
        indices: the shard's point indices into the data.
        dtype: compute dtype name (``float64``).
        batch_size: points per vectorised batch.
        rtol: rank tolerance (None: NumPy's).
        device: ``cpu``, ``cuda`` (a Dask GPU worker's own GPU) or ``cuda:N``.
        folder: write ``shard-NNNNN.parquet`` there; None: return the rows.
    """

    model: ModelSpec
    data: DataSpec
    shard: int
    indices: tuple[int, ...]
    dtype: str = "float64"
    batch_size: int = 64
    rtol: float | None = None
    device: str = "cpu"
    folder: str | None = None


def spectrum_shard(task: SpectrumTask) -> ShardOutcome:
    """Compute one shard (top-level, so any executor can ship it)."""
    from leafscope.information import point_spectra

    device = worker_device(task.device)
    model = cached_model(task.model, device)
    images, labels = cached_data(task.data).take(task.indices)
    spectra = point_spectra(
        model,
        images,
        batch_size=task.batch_size,
        dtype=DTYPES[task.dtype],
        device=device,
        rtol=task.rtol,
    )
    columns = {
        "index": np.asarray(task.indices, dtype=np.int64),
        "label": labels.numpy().astype(np.int64),
        "predicted": spectra.predicted.numpy().astype(np.int64),
        "max_probability": spectra.max_probability.numpy(),
        "eigenvalues": spectra.eigenvalues.numpy(),
        "log10_eigenvalues": spectra.log10_eigenvalues().numpy(),
        "trace": spectra.trace.numpy(),
        "log10_trace": spectra.log10_trace().numpy(),
        "rank": spectra.rank.numpy().astype(np.int64),
    }
    if task.folder is None:
        return ShardOutcome(task.shard, len(task.indices), columns)
    ResultFolder(task.folder).write_shard(task.shard, columns)
    return ShardOutcome(task.shard, len(task.indices))


def spectrum_summary(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The medians of :func:`leafscope.information.summarize_spectra` over all rows."""
    from leafscope.information import summarize_spectra

    return summarize_spectra(
        torch.from_numpy(np.array(columns["eigenvalues"], dtype=np.float64)),
        torch.from_numpy(np.array(columns["trace"], dtype=np.float64)),
    ).to_json()


def rows_to_points(columns: Mapping[str, np.ndarray]) -> list[dict]:
    """Per-point JSON records (the ``points`` of ``spectrum --json``)."""
    logs, log_tr = columns["log10_eigenvalues"], columns["log10_trace"]
    return [
        {
            "log10_eigenvalues": logs[i].tolist(),
            "log10_trace": float(log_tr[i]),
            "rank": int(columns["rank"][i]),
            "predicted": int(columns["predicted"][i]),
            "max_probability": float(columns["max_probability"][i]),
            "index": int(columns["index"][i]),
            "label": int(columns["label"][i]),
        }
        for i in range(len(log_tr))
    ]


@dataclass
class SpectrumJob:
    """A whole spectrum job.

    Attributes:
        model: the model's spec.
        data: the data's spec.
        indices: the points, in output order.
        dtype: compute dtype name.
        batch_size: points per batch.
        rtol: rank tolerance.
        device: compute device (see :class:`SpectrumTask`).
        shard_size: points per shard.
        info: descriptive values written beside the settings (model source, data description).
    """

    model: ModelSpec
    data: DataSpec
    indices: Sequence[int]
    dtype: str = "float64"
    batch_size: int = 64
    rtol: float | None = None
    device: str = "cpu"
    shard_size: int = 1000
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1 (got {self.batch_size})")
        if not len(self.indices):
            raise InputError("a spectrum job needs at least one point")

    @property
    def shards(self) -> list[range]:
        return plan_shards(len(self.indices), self.shard_size)

    def settings(self) -> dict[str, Any]:
        """What defines the rows: compared with a folder's on resume (device, batch size and
        executor are not part of it: they change no result beyond round-off)."""
        n = len(self.indices)
        first_n = list(self.indices) == list(range(n))
        return {
            "command": "spectrum",
            "format": 1,
            "model": self.model.fingerprint(),
            "data": self.data.fingerprint(),
            "indices": {"first": n} if first_n else [int(i) for i in self.indices],
            "num_points": n,
            "dtype": self.dtype,
            "rtol": self.rtol,
            "shard_size": self.shard_size,
            "num_shards": len(self.shards),
            "columns": list(COLUMNS),
        }

    def task(self, shard: int, folder: str | None) -> SpectrumTask:
        positions = self.shards[shard]
        return SpectrumTask(
            model=self.model,
            data=self.data,
            shard=shard,
            indices=tuple(int(self.indices[p]) for p in positions),
            dtype=self.dtype,
            batch_size=self.batch_size,
            rtol=self.rtol,
            device=self.device,
            folder=folder,
        )


SpectrumJobResult = PointJobResult  # what run_spectrum_job did (computed, skipped, ...)


def run_spectrum_job(
    job: SpectrumJob,
    executor: Executor,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    part: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> SpectrumJobResult:
    """Run ``job`` on ``executor``: shards written under ``out`` (or rows kept in memory).

    Args:
        job: the job.
        executor: where the shards run (results do not depend on it).
        out: result folder; None keeps the rows in memory (small jobs, ``--json``).
        resume: skip the finished shards in ``out``.
        part: ``(I, N)``: run only slice I of N of the shards (job arrays); merge later.
        progress: a tqdm bar counting shards.

    Returns:
        A :class:`SpectrumJobResult`; with every shard present, ``_summary.json`` is written.
    """
    settings = job.settings()
    return run_shards(
        job,
        executor,
        spectrum_shard,
        lambda columns: _summary_payload(settings, job.info, columns),
        merge_spectrum,
        out=out,
        resume=resume,
        part=part,
        progress=progress,
    )


def _summary_payload(
    settings: Mapping[str, Any], info: Mapping[str, Any], columns: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    return {
        **dict(info),
        "dtype": settings["dtype"],
        "num_points": int(len(columns["trace"])),
        "num_shards": settings["num_shards"],
        "shard_size": settings["shard_size"],
        "summary": spectrum_summary(columns),
    }


def merge_spectrum(path: str | Path) -> dict[str, Any]:
    """Check a spectrum folder is complete and consistent, then write its ``_summary.json``.

    Returns:
        The summary payload (also written to ``path/_summary.json``).

    Raises:
        InputError: not a spectrum folder, shards missing, or rows that do not match the
            recorded points.
    """
    folder = ResultFolder(path)
    recorded = folder.read_settings()
    if recorded is None or recorded.get("settings", {}).get("command") != "spectrum":
        raise InputError(f"{folder.path} is not a spectrum result folder (no _settings.json)")
    settings = recorded["settings"]
    folder.check_complete(settings["num_shards"])
    columns = folder.read_columns(settings["num_shards"], ["index", "eigenvalues", "trace"])
    expected = settings["indices"]
    expected = range(expected["first"]) if isinstance(expected, dict) else expected
    if len(columns["index"]) != settings["num_points"] or not np.array_equal(
        columns["index"], np.asarray(expected, dtype=np.int64)
    ):
        raise InputError(
            f"{folder.path}: the shards hold {len(columns['index'])} rows that do not match the "
            f"{settings['num_points']} recorded points: delete the folder and run the job again"
        )
    payload = _summary_payload(settings, recorded.get("info", {}), columns)
    folder.write_summary(payload)
    return payload
