"""The main job: partially train a model (LeNet-5 on MNIST, or ResNet-18 on CIFAR-10) and write
an HTML report of what it sees.

Pipeline (each step a library call; the CLI ``leafscope demo`` is a thin wrapper):
train with checkpoints every K steps (per-step loss and filter temperatures recorded) → pick the
final, *partially trained* checkpoint → spectra of G on test points and on uniform-noise points
→ trace and rank of G across the checkpoints → hot/cold filter pruning → small versions of the
feature commands → report. The measurements are in :mod:`leafscope.experiments.demo`, the
rendering in :mod:`leafscope.report.demo_sections`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from leafscope.experiments import demo as steps
from leafscope.experiments.demo import (
    NORMALIZATION,
    RANK_RTOL,
    DemoConfig,
    demo_config,
    require_local,
)
from leafscope.io import write_json
from leafscope.report import Report, demo_sections

__all__ = ["NORMALIZATION", "RANK_RTOL", "DemoConfig", "demo_config", "require_local", "run_demo"]

MODEL_TITLES = {"lenet": "LeNet-5", "resnet18": "ResNet-18"}


@contextmanager
def _timer(cfg: DemoConfig, key: str) -> Iterator[None]:
    """Record the wall time of the block as ``cfg.timings[key + "_s"]`` and the CPU time of
    this process (all threads) as ``cfg.timings[key + "_cpu_s"]``, in seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    cfg.timings[f"{key}_s"] = time.perf_counter() - t0
    cfg.timings[f"{key}_cpu_s"] = time.process_time() - c0


def _core(cfg: DemoConfig, out: Path) -> dict[str, Any]:
    """Training, spectra on data and noise, G across checkpoints, pruning (in this order)."""
    with _timer(cfg, "data"):
        data = steps.load_demo_data(cfg)
    with _timer(cfg, "training"):
        training = steps.train_partially(cfg, data, out / "run")
    with _timer(cfg, "spectra"):
        spectra = steps.data_and_noise_spectra(cfg, training.fit_result.checkpoints[-1], data)
    with _timer(cfg, "explore"):
        notices = steps.notices_experiment(cfg, training.fit_result.checkpoints[-1], out)
    with _timer(cfg, "across_checkpoints"):
        across = steps.information_across_checkpoints(cfg, out / "run", data)
    with _timer(cfg, "thermo"):
        thermo = steps.thermo_experiment(cfg, training, data)
    return {"data": data, "training": training, "spectra": spectra, "across": across,
            "thermo": thermo, "notices": notices}  # fmt: skip


def _features(cfg: DemoConfig, out: Path, core: dict[str, Any]) -> dict[str, Any]:
    """The small versions of the feature commands on the final checkpoint (in this order)."""
    data, model = core["data"], core["training"].model
    found: dict[str, Any] = {}
    with _timer(cfg, "foliation"):
        found["foliation"] = steps.foliation_experiment(
            model, data.test, pairs=cfg.fol_pairs, max_steps=cfg.fol_max_steps,
            walk_points=cfg.fol_walk_points, walk_steps=cfg.fol_walk_steps,
            involutivity_points=cfg.involutivity_points, seed=cfg.seed,
        )  # fmt: skip
    fashion = None
    if cfg.dataset == "mnist":
        fashion, _ = steps.optional_set("fashion-mnist", "test", cfg, cfg.ood_points)
    with _timer(cfg, "ood"):
        outs, skipped = steps.ood_out_sets(cfg, data, fashion)
        found["ood"] = steps.ood_experiment(
            model, data.train, data.test, outs, fit_points=cfg.ood_fit_points,
            points=cfg.ood_points, leaf_points=cfg.leaf_ood_points,
            leaf_steps=cfg.leaf_ood_steps, skipped=skipped,
        )  # fmt: skip
    with _timer(cfg, "transfer"):
        sets, skipped = steps.transfer_sets(cfg, data, fashion)
        found["transfer"] = steps.transfer_experiment(
            model, sets, points=cfg.transfer_points,
            transfer_train_points=cfg.transfer_train_points,
            transfer_val_points=cfg.transfer_val_points, skipped=skipped,
        )  # fmt: skip
    with _timer(cfg, "denoise"):
        found["denoise"] = steps.denoise_experiment(
            model, data.train, data.test, points=cfg.denoise_points, pool=cfg.denoise_pool,
            tune_points=cfg.denoise_tune_points, leaf_steps=cfg.denoise_leaf_steps,
        )  # fmt: skip
    with _timer(cfg, "nnk"):
        found["nnk"] = steps.nnk_experiment(
            out / "run", data.train, data.test, layers=cfg.nnk_layers, points=cfg.nnk_points,
            k=cfg.nnk_k, test_points=cfg.nnk_test_points, device=torch.device(cfg.device),
        )  # fmt: skip
    return found


def _render(cfg: DemoConfig, core: dict[str, Any], found: dict[str, Any]) -> Report:
    """The report: core sections, then one section per feature."""
    model = MODEL_TITLES.get(cfg.model, cfg.model)
    report = Report(
        f"leafscope demo: what a partially trained {model} sees in {core['data'].title}",
        meta=f"inputs: {NORMALIZATION}; device {torch.device(cfg.device)}; "
        f"torch {torch.__version__}",
    )
    demo_sections.training_section(
        report, cfg, model, core["data"], core["training"], core["across"]
    )
    demo_sections.spectra_section(report, cfg, core["spectra"])
    demo_sections.notices_section(report, core["notices"])
    demo_sections.across_section(report, cfg, core["across"])
    demo_sections.thermo_section(report, core["thermo"], model)
    demo_sections.foliation_section(report, found["foliation"])
    demo_sections.ood_section(report, found["ood"], core["data"].title)
    demo_sections.transfer_section(report, found["transfer"], core["data"].title)
    demo_sections.denoise_section(report, found["denoise"], core["data"].title)
    demo_sections.nnk_section(report, found["nnk"])
    return report


def run_demo(cfg: DemoConfig) -> Path:
    """Run the whole demo; returns the path of the written ``report.html``.

    Also writes ``cfg.out/figures/*.png`` (every figure of the report), ``cfg.out/results.json``
    (every number of the report) and ``cfg.out/run/`` (the checkpoints); ``cfg.timings``
    receives the wall and CPU seconds of each step.

    Raises:
        DataFileError: ``cfg.dataset`` is ``cifar10`` and its archive is not on the data search
            path (one line naming the file and the folders searched; nothing is downloaded).
    """
    t_start, c_start = time.perf_counter(), time.process_time()
    out = Path(cfg.out)
    if cfg.dataset != "mnist":
        require_local(cfg.dataset, cfg.data_dir)  # before creating anything
    out.mkdir(parents=True, exist_ok=True)
    core = _core(cfg, out)
    training = core["training"]
    results = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "normalization": NORMALIZATION,
        "history": training.fit_result.history,
        "step_losses": training.step_losses,
        "test_accuracy": training.test_accuracy,
        "test_loss": training.test_loss,
        "test_points": training.test_points,
        "checkpoint": str(training.fit_result.checkpoints[-1]),
        "spectra": {name: s.summary().to_json() for name, s in core["spectra"].items()},
        "notices": {
            "points": core["notices"].points,
            "median_leaf_change": core["notices"].leaf_change,
            "median_kernel_change": core["notices"].kernel_change,
            "explorer": core["notices"].explorer,
        },
        "across_checkpoints": core["across"].to_json(),
        "thermo": core["thermo"].to_json(),
    }
    found = _features(cfg, out, core)
    results.update({name: outcome.to_json() for name, outcome in found.items()})
    report = _render(cfg, core, found)
    cfg.timings["total_s"] = time.perf_counter() - t_start
    cfg.timings["total_cpu_s"] = time.process_time() - c_start
    results["timings"] = cfg.timings
    demo_sections.reproduce_section(report, cfg, cfg.timings)
    write_json(out / "results.json", results)
    return report.write(out)
