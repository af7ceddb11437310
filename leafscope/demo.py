"""The main job: partially train LeNet-5 on real MNIST and write an HTML report of what it sees.

Pipeline (each step a library call; the CLI ``leafscope demo`` is a thin wrapper):
train with checkpoints every K steps → pick the final, *partially trained* checkpoint →
spectra of G on MNIST test points and on uniform-noise points → trace and rank of G across
the checkpoints → report sections (the feature modules add theirs).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from leafscope.data import load_images, noise_like, train_val_split
from leafscope.information import point_spectra
from leafscope.io import write_json
from leafscope.models import build_model
from leafscope.report import Report, demo_sections
from leafscope.report.figures import core as core_figures
from leafscope.training import evaluate, fit, list_checkpoints, load_checkpoint

NORMALIZATION = "pixels/255 in [0, 1], no mean/std normalisation"
# Rank tolerance of the across-training figure: eigenvalues >= 1e-6 λ1 (singular values of the
# factor >= 1e-3 σ1), a resolution at which saturation is visible (NumPy's default counts 9).
RANK_RTOL = 1e-3


@dataclass
class DemoConfig:
    """Settings of the demo (defaults: about 2-3 minutes on 2 CPU cores).

    Attributes:
        out: output folder (report.html, results.json, run/ with checkpoints).
        device: torch device for training and analysis.
        epochs: training epochs (SGD, lr 0.01, momentum 0.9; one epoch is partial training on
            purpose, so G has not collapsed, cf. theory §1 "saturation").
        train_limit: use only the first N training images (None = all 60000 minus validation).
        checkpoint_every_steps: extra checkpoints for the across-training figure.
        points: MNIST test points (and as many noise points) for the spectra.
        points_per_checkpoint: test points per checkpoint for the trace/rank figure.
        ood_points: points per set (MNIST test, Fashion-MNIST, noise) in the OOD section.
        quick: shrink the feature sections (one short path, few walks): a smoke run.
        seed: seeds initialisation, split, batch order and noise.
        data_dir: extra data folder searched first.
    """

    out: Path = Path("leafscope-demo")
    device: str = "cpu"
    epochs: int = 1
    train_limit: int | None = None
    checkpoint_every_steps: int = 100
    points: int = 256
    points_per_checkpoint: int = 64
    ood_points: int = 256
    quick: bool = False
    seed: int = 0
    data_dir: str | None = None
    progress: bool = True
    timings: dict = field(default_factory=dict)


def run_demo(cfg: DemoConfig) -> Path:
    """Run the whole demo; returns the path of the written ``report.html``."""
    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    train_all = load_images("mnist", "train", data_dir=cfg.data_dir, limit=cfg.train_limit)
    test = load_images("mnist", "test", data_dir=cfg.data_dir)
    train_idx, val_idx = train_val_split(len(train_all), 0.1, seed=cfg.seed)
    train, val = train_all.subset(train_idx), train_all.subset(val_idx)

    # 1. partial training, checkpoints every K steps
    torch.manual_seed(cfg.seed)
    model = build_model("lenet", activation="relu", num_classes=10)
    t0 = time.perf_counter()
    result = fit(
        model,
        train,
        val,
        epochs=cfg.epochs,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        batch_size=64,
        seed=cfg.seed,
        device=device,
        out_dir=out / "run",
        overwrite=True,
        checkpoint_every_steps=cfg.checkpoint_every_steps,
        progress=cfg.progress,
        meta={"dataset": train_all.describe(), "normalization": NORMALIZATION},
    )
    cfg.timings["training_s"] = time.perf_counter() - t0
    final = load_checkpoint(result.checkpoints[-1], device=device)
    test_loss, test_acc = evaluate(final, (test.images, test.labels), device=device)

    # 2. spectra on data and noise points
    t0 = time.perf_counter()
    x_data = test.images[: cfg.points]
    x_noise = noise_like(test.subset(range(cfg.points)), seed=cfg.seed).images
    spectra = {
        "MNIST test": point_spectra(final, x_data, device=device, progress=cfg.progress),
        "uniform noise": point_spectra(final, x_noise, device=device, progress=cfg.progress),
    }
    cfg.timings["spectra_s"] = time.perf_counter() - t0

    # 3. trace and rank of G across checkpoints
    t0 = time.perf_counter()
    infos = list_checkpoints(out / "run")
    x_ckpt = test.images[: cfg.points_per_checkpoint]
    steps, across, accs = [], [], []
    for info in infos:
        model_k = load_checkpoint(info.path, device=device)
        steps.append(info.step)
        across.append(point_spectra(model_k, x_ckpt, device=device, rtol=RANK_RTOL))
        accs.append(evaluate(model_k, (val.images[:2000], val.labels[:2000]), device=device)[1])
    cfg.timings["across_checkpoints_s"] = time.perf_counter() - t0

    # 4. report
    results = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "normalization": NORMALIZATION,
        "history": result.history,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "checkpoint": str(result.checkpoints[-1]),
        "spectra": {name: s.summary().to_json() for name, s in spectra.items()},
        "across_checkpoints": [
            {
                "step": st,
                "val_accuracy": acc,
                "median_log10_trace": float(s.log10_trace().median()),
                "rank_counts": torch.bincount(s.rank, minlength=10).tolist(),
            }
            for st, s, acc in zip(steps, across, accs, strict=True)
        ],
    }
    report = Report(
        "leafscope demo: what a partially trained LeNet sees in MNIST",
        meta=f"inputs: {NORMALIZATION}; device {device}; torch {torch.__version__}",
    )
    sec = report.section("Training (partial, on purpose)")
    sec.text(
        f"LeNet-5 (ReLU) trained on {len(train)} MNIST images with SGD (lr 0.01, momentum 0.9, "
        f"batch 64) for {cfg.epochs} epoch(s), checkpoints every {cfg.checkpoint_every_steps} "
        f"steps. Test accuracy of the final checkpoint: {100 * test_acc:.2f}% (loss "
        f"{test_loss:.4f}). A fully trained model has a collapsed information matrix "
        "(softmax saturates), so the analyses use this partially trained one."
    )
    sec.figure(
        core_figures.training_curve(
            result.history,
            [
                {"epoch_fraction": st / max(steps[-1], 1) * cfg.epochs, "val_accuracy": a}
                for st, a in zip(steps, accs, strict=True)
            ],
        ),
        "training_curve.png",
        "Loss and accuracy per epoch; dotted: validation accuracy (2000 images) per checkpoint.",
    )
    sec = report.section("Spectrum of the data information matrix G(x, w)")
    sec.text(
        f"G = Jᵀ(diag p − ppᵀ)J at {cfg.points} MNIST test images and {cfg.points} uniform-noise "
        "images, float64, from the C×n factor (never the 784×784 matrix). Eigenvalues in "
        "1/(pixel unit)²; rank ≤ C − 1 = 9. Columns as in the knowledge-transfer table "
        "(Tron & Fioresi 2024): medians over points."
    )
    sec.table(
        ["points", "median log10 λ1", "median log10 λ9", "median Δ", "median log10 tr G"],
        [[name, *asdict(s.summary()).values()] for name, s in spectra.items()],
    )
    sec.figure(
        core_figures.spectra_comparison(spectra),
        "spectra.png",
        "Distribution of each nonzero eigenvalue of G (box: quartiles) and of its trace.",
    )
    sec = report.section("The information matrix during training")
    sec.text(
        f"Trace and numerical rank of G at the first {cfg.points_per_checkpoint} test images for "
        f"each of the {len(infos)} checkpoints (step 0 = initial weights). Rank counts the "
        "eigenvalues ≥ 1e-6·λ1: as the softmax saturates, the smallest ones fall below it."
    )
    sec.figure(
        core_figures.information_across_training(steps, across, max_rank=9),
        "information_across_training.png",
    )
    # 5. feature sections (small versions of the full commands)
    t0 = time.perf_counter()
    small = {"pairs": 1, "max_steps": 20, "walk_points": 8, "walk_steps": 20}
    results["foliation"] = demo_sections.foliation_section(
        report, final, test, seed=cfg.seed, **(small if cfg.quick else {})
    )
    cfg.timings["foliation_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fashion = load_images("fashion-mnist", "test", data_dir=cfg.data_dir, limit=cfg.ood_points)
    noise = noise_like(test.subset(range(cfg.ood_points)), seed=cfg.seed + 1).images
    outs = {"fashion-mnist": fashion.images, "noise": noise}
    results["ood"] = demo_sections.ood_section(
        report, final, train, test, outs, points=cfg.ood_points
    )
    cfg.timings["ood_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sets = {
        "mnist": (train, test),
        "fashion-mnist": (
            load_images("fashion-mnist", "train", data_dir=cfg.data_dir, limit=3000),
            fashion,
        ),
        "noise": (noise_like(train.subset(range(min(3000, len(train)))), seed=cfg.seed + 2), None),
    }
    results["transfer"] = demo_sections.transfer_section(
        report, final, sets, points=32 if cfg.quick else 128
    )
    cfg.timings["transfer_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["denoise"] = demo_sections.denoise_section(
        report,
        final,
        train,
        test,
        **({"points": 8, "tune_points": 10, "leaf_steps": 5} if cfg.quick else {"points": 32}),
    )
    cfg.timings["denoise_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["nnk"] = demo_sections.nnk_section(
        report,
        out / "run",
        train,
        test,
        **({"points": 150, "test_points": 500} if cfg.quick else {}),
        device=device,
    )
    cfg.timings["nnk_s"] = time.perf_counter() - t0
    cfg.timings["total_s"] = time.perf_counter() - t_start
    results["timings"] = cfg.timings
    report.section("Reproduce").code(
        "leafscope demo --out " + str(out) + "\n" + json.dumps(cfg.timings, indent=1)
    )
    write_json(out / "results.json", results)
    return report.write(out)
