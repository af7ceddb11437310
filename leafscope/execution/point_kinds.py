"""The built-in per-point job kinds of :mod:`leafscope.execution.points`: none any more.

``denoise``, ``involutivity`` and ``generate`` are tasks now (:mod:`leafscope.tasks.denoise`,
:mod:`leafscope.tasks.involutivity`, :mod:`leafscope.tasks.generate`), run by
:func:`leafscope.execution.run`. This module stays because
:func:`leafscope.execution.points.point_kind` imports it to register the built-in kinds; custom
kinds still register with :func:`leafscope.execution.register_point_kind`.
"""

from __future__ import annotations

__all__: list[str] = []
