"""Figures of the leaf-path study from the JSON files its driver wrote
(:mod:`leafscope.experiments.leafpath`).

Run ``python -m leafscope.report.leafpath --studies LABEL=JSON,... --figure PNG``: the
λ-geodesic study (:func:`leafscope.report.figures.foliation.geodesic_study_figure`) of the
``geodesic`` JSON files, one label per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Draw the figure; 0 on success."""
    from leafscope.report.figures.foliation import geodesic_study_figure
    from leafscope.report.save import save_figure

    p = argparse.ArgumentParser(prog="python -m leafscope.report.leafpath", description=__doc__)
    p.add_argument(
        "--studies",
        required=True,
        help="LABEL=JSON,...: geodesic JSON files of python -m leafscope.experiments.leafpath",
    )
    p.add_argument("--figure", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    documents = {}
    for item in args.studies.split(","):
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            p.error(f"--studies takes LABEL=JSON items naming existing files (got {item!r})")
        document = json.loads(Path(path).read_text())
        if "geodesic" not in document:
            p.error(f"{path} is not a geodesic study (leafpath geodesic writes those)")
        documents[label] = document["geodesic"]
    save_figure(geodesic_study_figure(documents), args.figure)
    print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
