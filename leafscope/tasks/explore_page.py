"""The explorer page: a static folder (no server, no network) written from explore's rows.

Layout of the folder ``root`` (all links relative, so it opens from ``file://`` and keeps
working when copied elsewhere)::

    root/index.html                          the page (open it in a browser)
    root/_files/explorer/explorer.css        style
    root/_files/explorer/explorer.js         the page's code (no inference: it only shows)
    root/_files/explorer/data/points.js      the gallery: per point its numbers and image
    root/_files/explorer/data/detail-NNN.js  per point its directions, walks and probabilities
                                             (CHUNK points a file)

The data files are plain ``<script>`` files (``file://`` pages may not fetch JSON): the gallery's
before the page's code, the details after it (the gallery shows first; the page's ``load`` event
waits for every detail file, after which a click shows a point at once). Images are 8-bit PNGs
(base64), probabilities rounded to 4 decimals.

This is text and pixels only (as :mod:`leafscope.tasks._tiles`), so it sits beside the task that
computes the rows; :mod:`leafscope.report.explorer` re-exports it for the report.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from leafscope.io import atomic_write_text

__all__ = ["ASSETS", "CHUNK", "write_explorer"]

#: Points per detail file.
CHUNK = 50
#: Where the assets go, relative to the page's folder.
ASSETS = "_files/explorer"

_GALLERY_KEYS = (
    "index",
    "label",
    "predicted",
    "max_probability",
    "trace",
    "log10_trace",
    "rank",
    "lambda1",
    "log10_eigenvalues",
    "leaf_change",
    "kernel_change",
)


def _js(value: Any) -> str:
    """JSON safe inside a script (no ``</``, no raw U+2028/9: ``ensure_ascii``)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/")


def _rounded(value: Any, digits: int = 5) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _asset(name: str) -> str:
    return resources.files("leafscope.tasks").joinpath("explore_assets", name).read_text("utf-8")


def write_explorer(
    root: str | Path, *, points: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]
) -> list[Path]:
    """Write the explorer page of ``points`` into the folder ``root``.

    Args:
        root: the page's folder (``index.html`` goes at its top, the rest under
            ``_files/explorer/``); created if missing.
        points: one record per point: ``index``, ``label``, ``predicted``,
            ``max_probability``, ``trace``, ``log10_trace``, ``rank``, ``lambda1``,
            ``log10_eigenvalues``, ``leaf_change``, ``kernel_change`` and ``view`` (the
            ``view`` JSON of :class:`leafscope.tasks.explore.ExploreTask`: ``image`` or
            ``values``, and ``directions``).
        meta: ``num_classes``, ``class_names``, ``input_shape``, ``kind`` (grey, rgb,
            channels, vector), ``data``, ``t`` (the walk's step lengths), ``radius``,
            ``params``, ``summary``.

    Returns:
        The paths written: ``index.html`` first, then the assets and data files.
    """
    root = Path(root)
    assets = root / ASSETS
    data = assets / "data"
    data.mkdir(parents=True, exist_ok=True)
    written = []
    gallery = []
    for point in points:
        record = {k: _rounded(point.get(k)) for k in _GALLERY_KEYS}
        view = point["view"]
        record["image"] = view.get("image")
        record["values"] = view.get("values")
        gallery.append(record)
    page_meta = {**meta, "chunk": CHUNK, "count": len(points)}
    written.append(
        atomic_write_text(
            data / "points.js",
            "window.LEAFSCOPE={meta:"
            + _js(page_meta)
            + ",points:"
            + _js(gallery)
            + ",details:{}};\n",
        )  # fmt: skip
    )
    chunks = []
    for start in range(0, len(points), CHUNK):
        name = f"detail-{start // CHUNK:04d}.js"
        details = {}
        for point in points[start : start + CHUNK]:
            view = point["view"]
            details[str(point["index"])] = {
                "directions": [_rounded_direction(d) for d in view["directions"]]
            }
        written.append(
            atomic_write_text(data / name, "window.LEAFSCOPE.addDetails(" + _js(details) + ");\n")
        )
        chunks.append(name)
    for stale in data.glob("detail-*.js"):
        if stale.name not in chunks:
            stale.unlink()
    for name in ("explorer.css", "explorer.js"):
        written.append(atomic_write_text(assets / name, _asset(name)))
    title = f"leafscope explorer: {meta.get('data', '')}".strip()
    scripts = ["data/points.js", "explorer.js", *(f"data/{c}" for c in chunks)]
    page = (
        _asset("index.html")
        .replace("{{TITLE}}", html.escape(title))
        .replace("{{ASSETS}}", ASSETS)
        .replace(
            "{{SCRIPTS}}",
            "\n".join(f'<script src="{ASSETS}/{s}"></script>' for s in scripts),
        )
    )
    index = atomic_write_text(root / "index.html", page)
    return [index, *written]


def _rounded_direction(direction: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(direction)
    for key in ("eigenvalue", "vgv"):
        if out.get(key) is not None:
            out[key] = _rounded(float(out[key]), 4)
    return out
