"""The main job: partially train LeNet-5 on real MNIST and write an HTML report of what it sees.

Pipeline (each step a library call; the CLI ``leafscope demo`` is a thin wrapper):
train with checkpoints every K steps → pick the final, *partially trained* checkpoint →
spectra of G on MNIST test points and on uniform-noise points → trace and rank of G across
the checkpoints → small versions of the feature commands → report. The measurements are in
:mod:`leafscope.experiments.demo`, the rendering in :mod:`leafscope.report.demo_sections`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from leafscope.data import load_images
from leafscope.experiments import demo as steps
from leafscope.experiments.demo import NORMALIZATION, RANK_RTOL, DemoConfig
from leafscope.io import write_json
from leafscope.report import Report, demo_sections

__all__ = ["NORMALIZATION", "RANK_RTOL", "DemoConfig", "run_demo"]


@contextmanager
def _timer(cfg: DemoConfig, key: str) -> Iterator[None]:
    """Record the wall time of the block in seconds as ``cfg.timings[key]``."""
    t0 = time.perf_counter()
    yield
    cfg.timings[key] = time.perf_counter() - t0


def _core(cfg: DemoConfig, out: Path) -> dict[str, Any]:
    """Training, spectra on data and noise, G across checkpoints (in this order)."""
    data = steps.load_demo_data(cfg)
    with _timer(cfg, "training_s"):
        training = steps.train_partially(cfg, data, out / "run")
    with _timer(cfg, "spectra_s"):
        spectra = steps.data_and_noise_spectra(cfg, training.model, data.test)
    with _timer(cfg, "across_checkpoints_s"):
        across = steps.information_across_checkpoints(cfg, out / "run", data)
    return {"data": data, "training": training, "spectra": spectra, "across": across}


def _features(cfg: DemoConfig, out: Path, core: dict[str, Any]) -> dict[str, Any]:
    """The small versions of the feature commands on the final checkpoint (in this order);
    ``--quick`` shrinks each."""
    data, model, quick = core["data"], core["training"].model, cfg.quick
    found: dict[str, Any] = {}
    with _timer(cfg, "foliation_s"):
        small = {"pairs": 1, "max_steps": 20, "walk_points": 8, "walk_steps": 20}
        found["foliation"] = steps.foliation_experiment(
            model, data.test, seed=cfg.seed, **(small if quick else {})
        )
    with _timer(cfg, "ood_s"):
        fashion = load_images("fashion-mnist", "test", data_dir=cfg.data_dir, limit=cfg.ood_points)
        outs = steps.ood_out_sets(cfg, data.test, fashion)
        found["ood"] = steps.ood_experiment(
            model, data.train, data.test, outs, points=cfg.ood_points
        )
    with _timer(cfg, "transfer_s"):
        found["transfer"] = steps.transfer_experiment(
            model, steps.transfer_sets(cfg, data, fashion), points=32 if quick else 128
        )
    with _timer(cfg, "denoise_s"):
        small = {"points": 8, "tune_points": 10, "leaf_steps": 5} if quick else {"points": 32}
        found["denoise"] = steps.denoise_experiment(model, data.train, data.test, **small)
    with _timer(cfg, "nnk_s"):
        small = {"points": 150, "test_points": 500} if quick else {}
        found["nnk"] = steps.nnk_experiment(
            out / "run", data.train, data.test, **small, device=torch.device(cfg.device)
        )
    return found


def _render(cfg: DemoConfig, core: dict[str, Any], found: dict[str, Any]) -> Report:
    """The report: core sections, then one section per feature."""
    report = Report(
        "leafscope demo: what a partially trained LeNet sees in MNIST",
        meta=f"inputs: {NORMALIZATION}; device {torch.device(cfg.device)}; "
        f"torch {torch.__version__}",
    )
    demo_sections.training_section(report, cfg, core["data"], core["training"], core["across"])
    demo_sections.spectra_section(report, cfg, core["spectra"])
    demo_sections.across_section(report, cfg, core["across"])
    demo_sections.foliation_section(report, found["foliation"])
    demo_sections.ood_section(report, found["ood"])
    demo_sections.transfer_section(report, found["transfer"])
    demo_sections.denoise_section(report, found["denoise"])
    demo_sections.nnk_section(report, found["nnk"])
    return report


def run_demo(cfg: DemoConfig) -> Path:
    """Run the whole demo; returns the path of the written ``report.html``.

    Also writes ``cfg.out/results.json`` (every number of the report) and ``cfg.out/run/``
    (the checkpoints); ``cfg.timings`` receives the wall time of each step in seconds.
    """
    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    core = _core(cfg, out)
    training = core["training"]
    results = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "normalization": NORMALIZATION,
        "history": training.fit_result.history,
        "test_accuracy": training.test_accuracy,
        "test_loss": training.test_loss,
        "checkpoint": str(training.fit_result.checkpoints[-1]),
        "spectra": {name: s.summary().to_json() for name, s in core["spectra"].items()},
        "across_checkpoints": core["across"].to_json(),
    }
    found = _features(cfg, out, core)
    results.update({name: outcome.to_json() for name, outcome in found.items()})
    report = _render(cfg, core, found)
    cfg.timings["total_s"] = time.perf_counter() - t_start
    results["timings"] = cfg.timings
    demo_sections.reproduce_section(report, out, cfg.timings)
    write_json(out / "results.json", results)
    return report.write(out)
