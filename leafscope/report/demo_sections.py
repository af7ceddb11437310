"""Feature sections of the demo report: each takes the partially trained model and data, runs a
small version of the feature's measurement, and adds a section with its numbers and figures."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from leafscope.applications.denoise import denoise_benchmark
from leafscope.applications.detectors import make_detector
from leafscope.applications.ood import evaluate_detectors
from leafscope.applications.transfer import transfer_table
from leafscope.data import ImageDataset, noise_like
from leafscope.experiments.foliation import walk_experiment
from leafscope.foliation import PathConfig, WalkConfig, involutivity
from leafscope.report.figures import foliation as fol_figures
from leafscope.report.figures.applications import denoising_strips, roc_curves, spectra_histograms
from leafscope.report.html import Report

OOD_DETECTORS = ("msp", "energy", "mahalanobis", "knn", "dim-trace")


def foliation_section(
    report: Report,
    model: nn.Module,
    test: ImageDataset,
    *,
    pairs: int = 3,
    max_steps: int = 200,
    walk_points: int = 32,
    walk_steps: int = 200,
    involutivity_points: int = 3,
    seed: int = 0,
) -> dict:
    """Leaf path strip, vertical walk strip, accuracy-vs-distance, involutivity numbers."""
    exp = walk_experiment(
        model,
        test.images[:1000],
        test.labels[:1000],
        pairs=pairs,
        methods=("adaptive",),
        path_config=PathConfig(method="adaptive", max_steps=max_steps, record_every=5),
        vertical_points=walk_points,
        walk_config=WalkConfig(steps=walk_steps, record_every=max(walk_steps // 10, 1), seed=seed),
        seed=seed,
    )
    noise = noise_like(test.subset(range(involutivity_points)), seed=seed).images
    inv = involutivity(model, noise, inputs="noise")
    sec = report.section("Foliation: moving along a leaf and across leaves")
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
    return {"walk": exp.to_json(), "involutivity": inv.to_json()}


def ood_section(
    report: Report,
    model: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    outs: dict[str, torch.Tensor],
    *,
    fit_points: int = 2000,
    points: int = 300,
) -> list[dict]:
    """Out-of-distribution detection: DIM trace against the standard baselines."""
    detectors = {
        name: make_detector(name, model).fit(train.images[:fit_points], train.labels[:fit_points])
        for name in OOD_DETECTORS
    }
    results = evaluate_detectors(detectors, test.images[:points], outs)
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
    for out_name in outs:
        sec.figure(roc_curves(results, out_name), f"roc_{out_name}.png")
    return [
        {"detector": r.detector, "out_dataset": r.out_dataset, "auroc": r.auroc, "fpr95": r.fpr95}
        for r in results
    ]


def transfer_section(
    report: Report,
    model: nn.Module,
    datasets: dict[str, tuple[ImageDataset, ImageDataset | None]],
    *,
    points: int = 128,
    transfer_train_points: int = 2000,
) -> dict:
    """Knowledge transfer: DIM spectrum per data set and last-layer transfer accuracy."""
    result = transfer_table(
        model,
        datasets,
        points=points,
        transfer_train_points=transfer_train_points,
        transfer_val_points=500,
    )
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
    return result.to_json()


def denoise_section(
    report: Report,
    model: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    *,
    points: int = 32,
    sigma: float = 0.25,
    pool: int = 3000,
    tune_points: int = 50,
    leaf_steps: int = 20,
) -> dict:
    """Denoising by projection onto the data leaf against the standard baselines."""
    result = denoise_benchmark(
        model,
        train.images[:pool],
        test.images[:points],
        test.labels[:points],
        sigmas=(sigma,),
        tune_points=tune_points,
        leaf_steps=leaf_steps,
    )
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
    return result.to_json()


def nnk_section(
    report: Report,
    run_dir: str | Path,
    train: ImageDataset,
    test: ImageDataset,
    *,
    layers: tuple[str, ...] = ("conv1", "conv2", "fc1"),
    points: int = 500,
    k: int = 15,
    test_points: int = 2000,
    device: str | torch.device = "cpu",
) -> dict:
    """NNK graphs of the features across the run's checkpoints: MGMs and DeepNNK LOO error."""
    from leafscope.experiments.nnk import run_geometry
    from leafscope.report.figures.nnk import (
        plot_loo_vs_test,
        plot_mgm_distributions,
        plot_mgm_epochs,
    )

    geometry = run_geometry(
        run_dir,
        train.images[:points],
        train.labels[:points],
        list(layers),
        k=k,
        kernel="cosine",
        test_images=test.images[:test_points],
        test_labels=test.labels[:test_points],
        step_checkpoints=True,
        orientation=True,
        device=device,
    )
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
    return geometry.to_json()
