"""The explorer page of ``leafscope explore`` (a static folder: no server, no network).

The writer is text and pixels only, so it lives beside the task that computes the rows
(:mod:`leafscope.tasks.explore_page`: the task layer may not import the report); it is
re-exported here for the report and for library use.
"""

from leafscope.tasks.explore_page import ASSETS, write_explorer

__all__ = ["ASSETS", "write_explorer"]
