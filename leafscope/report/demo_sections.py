"""Sections of the demo report. Every function renders results computed by
:mod:`leafscope.experiments.demo` (numbers, tables, figures) and computes nothing itself."""

from __future__ import annotations

import html
import json
from dataclasses import asdict

from leafscope.experiments.demo import (
    LEAF_DETECTOR,
    AcrossCheckpoints,
    DemoConfig,
    DemoData,
    DenoiseOutcome,
    FoliationOutcome,
    NNKOutcome,
    Notices,
    OODOutcome,
    ThermoOutcome,
    Training,
    TransferOutcome,
)
from leafscope.information.spectrum import PointSpectra
from leafscope.report.figures import core as core_figures
from leafscope.report.figures import foliation as fol_figures
from leafscope.report.figures import notices as notices_figures
from leafscope.report.figures import thermo as thermo_figures
from leafscope.report.figures.applications import denoising_strips, roc_curves, spectra_histograms
from leafscope.report.figures.nnk import plot_loo_vs_test, plot_mgm_distributions, plot_mgm_epochs
from leafscope.report.html import Report


def _skipped_text(skipped: dict[str, str]) -> str:
    """`` Skipped: name (reason); ...`` or an empty string."""
    if not skipped:
        return ""
    return " Skipped: " + "; ".join(f"{k} ({why})" for k, why in skipped.items()) + "."


def training_section(
    report: Report,
    cfg: DemoConfig,
    model: str,
    data: DemoData,
    training: Training,
    across: AcrossCheckpoints,
) -> None:
    """The partial training: settings, test accuracy, per-step loss and checkpoint curves."""
    history = training.fit_result.history
    augment = ", random crop (padding 4) and horizontal flip" if cfg.augment else ""
    decay = f", weight decay {cfg.weight_decay:g}" if cfg.weight_decay else ""
    sec = report.section("Training (partial, on purpose)")
    sec.text(
        f"{model} (ReLU) trained on {len(data.train)} {data.title} images with SGD (lr "
        f"{cfg.lr:g}, momentum {cfg.momentum:g}{decay}, batch {cfg.batch_size}{augment}) for "
        f"{cfg.epochs} epoch(s) = {training.fit_result.steps} steps, checkpoints every "
        f"{cfg.checkpoint_every_steps} steps. Test accuracy of the final checkpoint on "
        f"{training.test_points} test images: {100 * training.test_accuracy:.2f}% (loss "
        f"{training.test_loss:.4f}). A fully trained model has a collapsed information matrix "
        "(softmax saturates), so the analyses use this partially trained one."
    )
    checkpoints = [
        {"step": st, "val_loss": loss, "val_accuracy": acc}
        for st, loss, acc in zip(across.steps, across.val_loss, across.val_accuracy, strict=True)
    ]
    sec.figure(
        core_figures.training_steps_curve(
            training.step_losses, checkpoints, [h["step"] for h in history]
        ),
        "training_curve.png",
        "Training loss of every optimizer step (and its moving mean); squares: loss and "
        f"accuracy on {across.val_points} validation images at each checkpoint (step 0 = "
        "initial weights); dotted lines: ends of epochs.",
    )


def spectra_section(report: Report, cfg: DemoConfig, spectra: dict[str, PointSpectra]) -> None:
    """Medians of the spectrum of G on data and noise points, and their distributions."""
    k = next(iter(spectra.values())).eigenvalues.shape[1]
    names = list(spectra)
    sec = report.section("Spectrum of the data information matrix G(x, w)")
    sec.text(
        f"G = Jᵀ(diag p − ppᵀ)J at {cfg.points} {names[0]} images and {cfg.points} "
        "uniform-noise images, float64, from the C×n factor (never the n×n matrix; each point "
        f"costs C = {k + 1} backward passes). Eigenvalues in 1/(pixel unit)²; rank ≤ C − 1 = "
        f"{k}. Columns as in the knowledge-transfer table (Tron & Fioresi 2024): medians over "
        "points."
    )
    sec.table(
        ["points", "median log10 λ1", f"median log10 λ{k}", "median Δ", "median log10 tr G"],
        [[name, *asdict(s.summary()).values()] for name, s in spectra.items()],
    )
    sec.figure(
        core_figures.spectra_comparison(spectra),
        "spectra.png",
        "Distribution of each nonzero eigenvalue of G (box: quartiles) and of its trace.",
    )


def notices_section(report: Report, notices: Notices) -> None:
    """What the model notices: the top eigen-directions of G at a few points, and a walk along a
    leaf direction beside a walk along a kernel direction, with a link to the explorer page."""
    sec = report.section("What the model notices")
    sec.text(
        "The eigenvectors of G(x) are the pixel directions the prediction is sensitive to (the "
        "leaf directions); its kernel holds the directions the model ignores. Below, for the "
        f"{len(notices.views)} explored test images with the largest λ1, the image and its top "
        "eigen-directions (red: the direction brightens the pixel, blue: darkens it), and a "
        "kernel direction for contrast. Every image shown was clipped to [0, 1] and rounded to "
        "8 bits before the model scored it."
    )
    sec.figure(
        notices_figures.directions_figure(notices.views, notices.titles),
        "notices_directions.png",
        "Each row: a test image, its leaf eigen-directions 1..3 (eigenvalue λ in 1/pixel²) and "
        "a random kernel direction (vᵀGv ≈ 0).",
    )
    sec.figure(
        notices_figures.walks_figure(notices.views[0], notices.predicted[0], notices.class_names),
        "notices_walks.png",
        "The first image walked along leaf direction 1 (top) and along a kernel direction "
        "(bottom), L2 steps in pixel units; above each image the model's probability of its "
        "predicted class on exactly that image.",
    )
    sec.text(
        f"Over the {notices.points} explored images, the largest move of the class "
        f"probabilities (total variation) along leaf direction 1 has median "
        f"{notices.leaf_change:.3f}, along a kernel direction {notices.kernel_change:.3f}. "
        f"Every explored image, sortable by trace, rank and λ1, with a slider along each "
        f"direction: {notices.explorer} (a static page beside this report, leafscope explore)."
    )
    sec.items.append(f'<p><a href="{html.escape(notices.explorer)}">Open the explorer</a></p>')


def across_section(report: Report, cfg: DemoConfig, across: AcrossCheckpoints) -> None:
    """Trace and numerical rank of G for each checkpoint."""
    k = across.spectra[0].eigenvalues.shape[1]
    sec = report.section("The information matrix during training")
    sec.text(
        f"Trace and numerical rank of G at the first {cfg.points_per_checkpoint} test images for "
        f"each of the {len(across.steps)} checkpoints (step 0 = initial weights). Rank counts the "
        "eigenvalues ≥ 1e-6·λ1: as the softmax saturates, the smallest ones fall below it."
    )
    sec.figure(
        core_figures.information_across_training(across.steps, across.spectra, max_rank=k),
        "information_across_training.png",
    )


def thermo_section(report: Report, outcome: ThermoOutcome, model: str) -> None:
    """Filter temperatures during training and hot/cold pruning against L1 and random."""
    o = outcome
    sec = report.section(f"Thermodynamics: temperature of the {o.layer} filters")
    sec.text(
        f"Temperature of each of the {o.n_groups} filters of {model}'s {o.layer} during the "
        "demo's training (theory §4: T = (1/d) Σ ½ (w_k(t) − w_k(t−1))², the actual change per "
        "optimizer step, momentum included; time average over the run). Then, without "
        f"retraining, the {o.removed} hottest / coldest filters are removed, or only the "
        f"{o.kept} hottest / coldest kept, next to the same operations by L1 norm and in a "
        f"random order; accuracy on {o.points} test images. Spearman ρ(temperature, L1) = "
        f"{o.spearman_l1:.3f}. One partially trained model and one seed: the published "
        "comparison over seeds is `leafscope thermo lenet`."
    )
    sec.table(
        ["condition", "accuracy (%)", "loss (nats)"],
        [[r.condition, r.accuracy_mean, r.loss_mean] for r in o.rows],
    )
    sec.figure(
        thermo_figures.temperature_over_training(o.history, o.layer),
        "temperature.png",
        f"Temperature of each {o.layer} filter, averaged over blocks of 5 steps.",
    )
    sec.figure(
        thermo_figures.pruning_table(o),
        "pruning.png",
        "Test accuracy with the filters of each condition masked (no retraining).",
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
        "network both equal C − 1, the distribution integrates to a foliation.",
    )


def ood_section(report: Report, outcome: OODOutcome, title: str) -> None:
    """Out-of-distribution detection: the leaf detector and DIM trace against the baselines."""
    results, fit_points, points = outcome.results, outcome.fit_points, outcome.points
    sec = report.section(f"Out-of-distribution detection ({title} in)")
    sec.text(
        f"Detectors fitted on {fit_points} {title} training images, scored on {points} {title} "
        f"test images against {points} images of each out set (higher score = more "
        f"in-distribution); the leaf detector ({LEAF_DETECTOR}: minus the distance to the data "
        f"leaf reached by a horizontal path of at most {outcome.leaf_steps} steps from the "
        f"nearest training image; pixel-nn is that starting point alone) on the first "
        f"{outcome.leaf_points} of each. One model, one seed: the full comparison over seeds is "
        "`leafscope ood`." + _skipped_text(outcome.skipped)
    )
    sec.table(
        ["detector", "out set", "AUROC", "FPR at 95% TPR", "points per set"],
        [
            [
                r.detector,
                r.out_dataset,
                r.auroc,
                r.fpr95,
                outcome.leaf_points if r.detector == LEAF_DETECTOR else points,
            ]
            for r in results
        ],  # fmt: skip
    )
    for out_name in outcome.out_sets:
        sec.figure(roc_curves(results, out_name), f"roc_{out_name}.png")


def transfer_section(report: Report, outcome: TransferOutcome, title: str) -> None:
    """Knowledge transfer: DIM spectrum per data set and last-layer transfer accuracy."""
    result, points = outcome.result, outcome.points
    transfer_train_points = outcome.transfer_train_points
    sec = report.section(f"Knowledge transfer: the {title} model's G on other data sets")
    sec.text(
        f"Medians over the first {points} training images of each set (float64), and the "
        f"accuracy after retraining only the last linear layer on {transfer_train_points} "
        "images of the target set. Published shape for MNIST (Tron & Fioresi 2024): the "
        "training set's λ1 about two orders of magnitude below the others, noise with the "
        "smallest Δ. Full setup: `leafscope transfer`." + _skipped_text(outcome.skipped)
    )
    k = len(next(iter(result.log10_eigenvalues.values()))[0]) if result.rows else 0
    sec.table(
        ["data set", "log10 λ1", f"log10 λ{k}", "Δ", "log10 tr G", "transfer accuracy"],
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


def denoise_section(report: Report, outcome: DenoiseOutcome, title: str) -> None:
    """Denoising by projection onto the data leaf against the standard baselines."""
    result, points, sigma = outcome.result, outcome.points, outcome.sigma
    sec = report.section(f"Denoising (Gaussian noise σ = {sigma})")
    sec.text(
        f"{points} {title} test images. Leaf projection: a horizontal path from the nearest "
        "clean training image toward the noisy input; its end is the closest point on the data "
        "leaf. Each baseline's parameter is tuned on separate noisy training images. PSNR with "
        "data range 1; accuracy of the same classifier on the denoised images. Full "
        "comparison: `leafscope denoise`."
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


def reproduce_section(report: Report, cfg: DemoConfig, timings: dict[str, float]) -> None:
    """The command and the measured wall and CPU times (seconds) of each step."""
    command = f"leafscope demo --out {cfg.out}"
    command += f" --dataset {cfg.dataset}" if cfg.dataset != "mnist" else ""
    command += " --quick" if cfg.quick else ""
    report.section("Reproduce").code(command + "\n" + json.dumps(timings, indent=1))
