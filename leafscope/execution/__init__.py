"""Execution at scale: one executor interface (in process or Dask), per-worker model and data
caches, and resumable results as Parquet shards.

``make_executor("dask", workers=4).map(fn, items)`` equals ``[fn(i) for i in items]``; jobs such
as :func:`run_spectrum_job` cut their points into shards, ship only specs and indices to the
workers, and write one atomically written Parquet file per shard.
"""

from leafscope.execution.executor import (
    EXECUTORS,
    DaskExecutor,
    Executor,
    InProcessExecutor,
    gpu_for_worker,
    make_executor,
    require_distributed,
    worker_device,
)
from leafscope.execution.results import (
    SETTINGS_FILE,
    SUMMARY_FILE,
    ResultFolder,
    parse_slice,
    plan_shards,
    require_pyarrow,
    slice_shards,
)
from leafscope.execution.specs import (
    DataSpec,
    ModelSpec,
    PointSource,
    cached,
    cached_data,
    cached_model,
    clear_cache,
    put_cached,
    put_cached_data,
    put_cached_model,
)
from leafscope.execution.spectrum import (
    COLUMNS,
    SpectrumJob,
    SpectrumTask,
    merge_spectrum,
    rows_to_points,
    run_spectrum_job,
    spectrum_shard,
    spectrum_summary,
)

__all__ = [
    "COLUMNS",
    "EXECUTORS",
    "SETTINGS_FILE",
    "SUMMARY_FILE",
    "DaskExecutor",
    "DataSpec",
    "Executor",
    "InProcessExecutor",
    "ModelSpec",
    "PointSource",
    "ResultFolder",
    "SpectrumJob",
    "SpectrumTask",
    "cached",
    "cached_data",
    "cached_model",
    "clear_cache",
    "gpu_for_worker",
    "make_executor",
    "merge_spectrum",
    "parse_slice",
    "plan_shards",
    "put_cached",
    "put_cached_data",
    "put_cached_model",
    "require_distributed",
    "require_pyarrow",
    "rows_to_points",
    "run_spectrum_job",
    "slice_shards",
    "spectrum_shard",
    "spectrum_summary",
    "worker_device",
]
