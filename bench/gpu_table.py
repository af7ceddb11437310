"""The one table of ``bench/gpu_check.sh``: each step's status and headline numbers, Markdown.

Reads the step list (``steps.tsv``: name, status, exit code, seconds), the pytest JUnit XML
files, the benchmarks' JSON files and the top-k benchmark's printed table from the work folder.

    python bench/gpu_table.py --work DIR --device cuda --out gpu_table.md
"""

from __future__ import annotations

import argparse
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path


def junit_counts(path: Path) -> tuple[str, list[str]]:
    """'P passed, F failed, E errors, S skipped' and the ids of the failed tests."""
    if not path.is_file():
        return "no report", []
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors")}
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    passed = total["tests"] - total["failures"] - total["errors"] - skipped
    counts = (
        f"{passed} passed, {total['failures']} failed, {total['errors']} errors, {skipped} skipped"
    )
    return counts, failed


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def dim_line(d: dict) -> str:
    return (
        f"LeNet {d['points']} pts float64: {d['lenet_leafscope_s']:.2f} s vs dense "
        f"{d['lenet_dense_s']:.1f} s ({d['lenet_speedup']:.0f}×), max rel. diff "
        f"{d['lenet_max_rel_diff_resolved']:.1e}; ResNet-18 224², C = 10: "
        f"{d['resnet18_224_c10_s']:.2f} s/point"
    )


def brackets_line(d: dict) -> str:
    return (
        f"{d['model']}: HVP {d['hvp_s_per_point']:.3f} s/point, full Hessian "
        f"{d['full_s_per_point']:.2f} s/point ({d['full_over_hvp']:.0f}×), max rel. diff "
        f"{d['max_rel_diff']:.1e}; dim D {d['mean_dim']:.2f}, with brackets "
        f"{d['mean_dim_with_brackets']:.2f}"
    )


def nnk_line(d: dict) -> str:
    gpu = d.get("faiss_gpu_knn_s")
    return (
        f"N = {d['n']}, k = {d['k']}: faiss kNN {d['faiss_knn_s']:.1f} s"
        + (f" (GPU index {gpu:.1f} s)" if gpu is not None else " (CPU index)")
        + f", fit {d['nnk_fit_s']:.1f} s (post-kNN {d['nnk_post_knn_s']:.2f} s), "
        f"scipy loop {d['scipy_loop_extrapolated_s']:.0f} s = "
        f"{d['scipy_loop_over_post_knn']:.0f}× post-kNN; sample weight diff "
        f"{d['sample_max_abs_weight_diff']:.1e}; peak RSS {d['peak_rss_mib']:.0f} MiB"
    )


def nnk_index_line(d: dict) -> str:
    parts = [f"flat fit {d['flat']['fit_s']:.1f} s"]
    for name in ("ivf", "hnsw"):
        if name in d:
            r = d[name]
            parts.append(
                f"{name}: recall {r['knn_recall']:.3f}, edge Jaccard {r['edge_jaccard']:.3f}, "
                f"fit {r['fit_s']:.1f} s"
            )
    routes = d.get("solve_routes")
    if routes:
        parts.append(
            f"sharded solves {routes['executor_over_in_process']:.2f}× in-process, identical "
            f"{routes['identical']}"
        )
    return "; ".join(parts)


def topk_rows(log: Path) -> list[str]:
    """The Markdown table bench_topk.py prints (header, rule and rows)."""
    if not log.is_file():
        return []
    return [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("|")]


def topk_line(rows: list[str]) -> str:
    heads = []
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) >= 8:
            heads.append(f"C = {cells[0]} {cells[1]}: {cells[5]}, max rel. err {cells[7]}")
    return "; ".join(heads) or "no table printed"


HEADLINES = {
    "dim-c10": ("dim.json", dim_line),
    "brackets": ("brackets.json", brackets_line),
    "nnk": ("nnk.json", nnk_line),
    "nnk-index": ("nnk_index.json", nnk_index_line),
}


def headline(name: str, status: str, work: Path) -> tuple[str, list[str]]:
    """The step's headline cell and extra lines (failed test ids) for the notes."""
    if status == "skipped":
        return "not run (time budget)", []
    if name in ("cuda-tests", "cuda-cli", "full-suite"):
        return junit_counts(work / f"{name}.xml")
    if name == "topk-c1000":
        return topk_line(topk_rows(work / f"{name}.log")), []
    if name in HEADLINES:
        file, fmt = HEADLINES[name]
        data = _load(work / file)
        if data is not None:
            try:
                return fmt(data), []
            except (KeyError, TypeError, ValueError) as exc:
                return f"unreadable {file}: {exc!r}", []
    return _last_line(work / f"{name}.log"), []


def _last_line(log: Path) -> str:
    if not log.is_file():
        return "no log"
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return re.sub(r"\|", "/", lines[-1])[:200] if lines else "empty log"


def build(work: Path, device: str) -> str:
    steps = [ln.split("\t") for ln in (work / "steps.tsv").read_text().splitlines() if ln.strip()]
    env_log = work / "env.log"
    env = env_log.read_text(errors="replace") if env_log.is_file() else ""
    env_lines = [ln for ln in env.splitlines() if ln.startswith(("torch", "gpu", "NVIDIA"))]
    out = [f"## GPU check (`bench/gpu_check.sh`, device {device})", ""]
    out += [f"- {ln}" for ln in env_lines] + [""]
    out += ["| step | status | seconds | headline |", "|---|---|---|---|"]
    notes: list[str] = []
    for name, status, rc, seconds in ((s + ["", "", ""])[:4] for s in steps):
        text, failed = headline(name, status, work)
        shown = status if status in ("ok", "skipped") else f"{status} (rc {rc})"
        out.append(f"| {name} | {shown} | {seconds} | {text} |")
        notes += [f"- {name} failed: `{f}`" for f in failed]
    rows = topk_rows(work / "topk-c1000.log")
    if rows:
        out += ["", "Top-k benchmark (bench_topk.py):", "", *rows]
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="gpu_check.sh's work folder")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, required=True, help="the Markdown file to write")
    args = ap.parse_args()
    text = build(args.work, args.device)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
