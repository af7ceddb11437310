"""Every analysis as a registered :class:`Task`: frozen keyword-only parameters, the work per
unit, the summary, its result columns and its report section (see :mod:`leafscope.tasks.base`).

Run any task with :func:`leafscope.execution.run` (in process or on Dask, with fingerprinted
shards, resume and merge); the CLI builds each command from the task's parameters.
"""

from leafscope.tasks.base import (
    TASKS,
    Context,
    Params,
    Task,
    get_task,
    param,
    register_task,
    task_names,
)

__all__ = ["TASKS", "Context", "Params", "Task", "get_task", "param", "register_task", "task_names"]
