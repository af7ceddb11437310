"""Sections of the demo report. Every function renders results computed by
:mod:`leafscope.experiments.demo` (numbers, tables, figures) and computes nothing itself."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from leafscope.experiments.demo import (
    AcrossCheckpoints,
    DemoConfig,
    DemoData,
    DenoiseOutcome,
    FoliationOutcome,
    NNKOutcome,
    OODOutcome,
    Training,
    TransferOutcome,
)
from leafscope.information.spectrum import PointSpectra
from leafscope.report.figures import core as core_figures
from leafscope.report.figures import foliation as fol_figures
from leafscope.report.figures.applications import denoising_strips, roc_curves, spectra_histograms
from leafscope.report.figures.nnk import plot_loo_vs_test, plot_mgm_distributions, plot_mgm_epochs
from leafscope.report.html import Report


def training_section(
    report: Report, cfg: DemoConfig, data: DemoData, training: Training, across: AcrossCheckpoints
) -> None:
    """The partial training: settings, test accuracy, loss and accuracy curves."""
    steps, train = across.steps, data.train
    test_acc = training.test_accuracy
    sec = report.section("Training (partial, on purpose)")
    sec.text(
        f"LeNet-5 (ReLU) trained on {len(train)} MNIST images with SGD (lr 0.01, momentum 0.9, "
        f"batch 64) for {cfg.epochs} epoch(s), checkpoints every {cfg.checkpoint_every_steps} "
        f"steps. Test accuracy of the final checkpoint: {100 * test_acc:.2f}% (loss "
        f"{training.test_loss:.4f}). A fully trained model has a collapsed information matrix "
        "(softmax saturates), so the analyses use this partially trained one."
    )
    sec.figure(
        core_figures.training_curve(
            training.fit_result.history,
            [
                {"epoch_fraction": st / max(steps[-1], 1) * cfg.epochs, "val_accuracy": a}
                for st, a in zip(steps, across.val_accuracy, strict=True)
            ],
        ),
        "training_curve.png",
        "Loss and accuracy per epoch; dotted: validation accuracy (2000 images) per checkpoint.",
    )


def spectra_section(report: Report, cfg: DemoConfig, spectra: dict[str, PointSpectra]) -> None:
    """Medians of the spectrum of G on data and noise points, and their distributions."""
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


def across_section(report: Report, cfg: DemoConfig, across: AcrossCheckpoints) -> None:
    """Trace and numerical rank of G for each checkpoint."""
    sec = report.section("The information matrix during training")
    sec.text(
        f"Trace and numerical rank of G at the first {cfg.points_per_checkpoint} test images for "
        f"each of the {len(across.steps)} checkpoints (step 0 = initial weights). Rank counts the "
        "eigenvalues ≥ 1e-6·λ1: as the softmax saturates, the smallest ones fall below it."
    )
    sec.figure(
        core_figures.information_across_training(across.steps, across.spectra, max_rank=9),
        "information_across_training.png",
    )


def foliation_section(report: Report, outcome: FoliationOutcome) -> None:
    """Leaf path strip, vertical walk strip, accuracy-vs-distance, involutivity numbers."""
    sec = report.section("Foliation: moving along a leaf and across leaves")
    exp, inv = outcome.walk, outcome.involutivity
    pairs, max_steps = outcome.pairs, outcome.max_steps
    involutivity_points = outcome.involutivity_points
    h = exp.horizontal["adaptive"]
    sec.text(
        f"Horizontal paths (along the leaf, D_x = Im G) between {pairs} random pairs of test "
        f"images, adaptive step, at most {max_steps} steps: "
        f"{100 * h.reached_fraction:.0f}% reach the target within distance 1; median "
        f"final/start distance {h.median_relative_distance:.3f}; "
        f"{100 * h.end_class_match:.0f}% end in the target's class. Vertical walks (ker G, step "
        "0.1) next to random directions of the same length: moving orthogonally to the leaf "
        "adds noise the model does not see, so its accuracy stays."
    )
    sec.figure(
        fol_figures.path_strip(exp.paths["adaptive"], 0),
        "leaf_path.png",
        "A horizontal path: frames titled with predicted label (probability).",
    )
    if exp.walk is not None:
        sec.figure(
            fol_figures.walk_strip(exp.walk, 0),
            "vertical_walk.png",
            "A vertical walk: the image fills with noise, the prediction stays.",
        )
    sec.figure(
        fol_figures.accuracy_vs_distance(exp.vertical, exp.random), "accuracy_vs_distance.png"
    )
    sec.table(
        ["points", "mean dim D_x", "mean dim span{D_x, [D_x, D_x]}", "rtol"],
        [
            [
                f"uniform noise ({involutivity_points})",
                inv.mean_dim_distribution,
                inv.mean_dim_with_brackets,
                inv.rtol,
            ]
        ],
        caption="Involutivity (Lie brackets by forward-over-reverse HVPs, float64): for a ReLU "
        "network both are 9, the distribution integrates to a foliation.",
    )


def ood_section(report: Report, outcome: OODOutcome) -> None:
    """Out-of-distribution detection: DIM trace against the standard baselines."""
    results, fit_points, points = outcome.results, outcome.fit_points, outcome.points
    sec = report.section("Out-of-distribution detection (MNIST in)")
    sec.text(
        f"Detectors fitted on {fit_points} MNIST training images, scored on {points} MNIST test "
        "images against each out set (higher score = more in-distribution). One model, one "
        "seed: the full comparison over seeds is `leafscope ood`."
    )
    sec.table(
        ["detector", "out set", "AUROC", "FPR at 95% TPR"],
        [[r.detector, r.out_dataset, r.auroc, r.fpr95] for r in results],
    )
    for out_name in outcome.out_sets:
        sec.figure(roc_curves(results, out_name), f"roc_{out_name}.png")


def transfer_section(report: Report, outcome: TransferOutcome) -> None:
    """Knowledge transfer: DIM spectrum per data set and last-layer transfer accuracy."""
    result, points = outcome.result, outcome.points
    transfer_train_points = outcome.transfer_train_points
    sec = report.section("Knowledge transfer: the MNIST model's G on other data sets")
    sec.text(
        f"Medians over the first {points} training images of each set (float64), and the "
        f"accuracy after retraining only the last linear layer on {transfer_train_points} "
        "images of the target set. Published shape (Tron & Fioresi 2024): MNIST's λ1 about two "
        "orders of magnitude below the others, noise with the smallest Δ. Full setup: "
        "`leafscope transfer`."
    )
    sec.table(
        ["data set", "log10 λ1", "log10 λ9", "Δ", "log10 tr G", "transfer accuracy"],
        [
            [
                r.dataset,
                r.median_log10_highest,
                r.median_log10_lowest,
                r.median_delta,
                r.median_log10_trace,
                "—" if r.transfer_accuracy is None else f"{100 * r.transfer_accuracy:.1f}%",
            ]
            for r in result.rows
        ],
    )
    sec.figure(spectra_histograms(result.log10_eigenvalues), "transfer_spectra.png")


def denoise_section(report: Report, outcome: DenoiseOutcome) -> None:
    """Denoising by projection onto the data leaf against the standard baselines."""
    result, points, sigma = outcome.result, outcome.points, outcome.sigma
    sec = report.section(f"Denoising (Gaussian noise σ = {sigma})")
    sec.text(
        f"{points} MNIST test images. Leaf projection: a horizontal path from the nearest clean "
        "training image toward the noisy input; its end is the closest point on the data leaf. "
        "Each baseline's parameter is tuned on separate noisy training images. PSNR with data "
        "range 1; accuracy of the same classifier on the denoised images. Full comparison: "
        "`leafscope denoise`."
    )
    sec.table(
        ["method", "PSNR (dB)", "± std", "accuracy"],
        [[r.method, r.psnr, r.psnr_std, f"{100 * r.accuracy:.1f}%"] for r in result.rows],
    )
    sec.figure(denoising_strips(result.examples[f"{sigma:g}"]), "denoising.png")


def nnk_section(report: Report, outcome: NNKOutcome) -> None:
    """NNK graphs of the features across the run's checkpoints: MGMs and DeepNNK LOO error."""
    geometry, layers, k = outcome.geometry, outcome.layers, outcome.k
    points, test_points = outcome.points, outcome.test_points
    r = geometry.pearson
    sec = report.section("Neighbourhood geometry of the features (NNK graphs)")
    sec.text(
        f"For every checkpoint of the run: the NNK graph (cosine kernel, k = {k}) of the "
        f"features of {', '.join(layers)} on {points} training images, its manifold graph "
        "metrics (NNK neighbours per node, polytope diameter, local dimension at 10% variance, "
        "orientation = mean principal angle to the neighbours' local subspaces), "
        f"and the DeepNNK leave-one-out error of the NNK classifier on the {geometry.loo_layer} "
        f"features, next to the error on {test_points} test images. Pearson r(LOO, test) = "
        + (f"{r:.3f}." if r is not None else "n/a.")
        + " The full analysis across epochs is `leafscope nnk --run RUN`."
    )
    sec.table(
        ["step", "NNK LOO error", "test error"]
        + [f"{name} neighbours" for name in layers]
        + [f"{name} local dim" for name in layers],
        [
            [e.step, e.loo_error, e.test_error]
            + [e.layers[name]["n_neighbors"]["mean"] for name in layers]
            + [e.layers[name]["local_dim"]["mean"] for name in layers]
            for e in geometry.epochs
        ],
    )
    sec.figure(plot_loo_vs_test(geometry), "nnk_loo_vs_test.png")
    sec.figure(
        plot_mgm_epochs(geometry), "nnk_mgm_across_training.png", "MGM mean ± std per layer."
    )
    sec.figure(
        plot_mgm_distributions(geometry),
        "nnk_mgm_distributions.png",
        "MGM distributions per layer at the final checkpoint.",
    )


def reproduce_section(report: Report, out: Path, timings: dict[str, float]) -> None:
    """The command and the measured wall times (seconds) of each step."""
    report.section("Reproduce").code(
        "leafscope demo --out " + str(out) + "\n" + json.dumps(timings, indent=1)
    )
