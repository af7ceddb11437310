"""Execution at scale: one executor interface (in process or Dask), per-worker model and data
caches, and resumable results as Parquet shards.

``make_executor("dask", workers=4).map(fn, items)`` equals ``[fn(i) for i in items]``;
:func:`run` runs any registered task (:mod:`leafscope.tasks`): it cuts the units into shards,
ships only specs and positions to the workers, and writes one atomically written, fingerprinted
Parquet file per shard; :func:`merge` verifies and summarises a result folder.
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
from leafscope.execution.runner import (
    FILES_DIR,
    FORMAT,
    Job,
    RunOptions,
    RunResult,
    make_job,
    merge,
    run,
)
from leafscope.execution.specs import (
    cached,
    clear_cache,
    put_cached,
)

__all__ = [
    "FILES_DIR",
    "FORMAT",
    "Job",
    "RunOptions",
    "RunResult",
    "make_job",
    "merge",
    "run",
    "EXECUTORS",
    "SETTINGS_FILE",
    "SUMMARY_FILE",
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "ResultFolder",
    "cached",
    "clear_cache",
    "gpu_for_worker",
    "make_executor",
    "parse_slice",
    "plan_shards",
    "put_cached",
    "require_distributed",
    "require_pyarrow",
    "slice_shards",
    "worker_device",
]
