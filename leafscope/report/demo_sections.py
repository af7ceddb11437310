"""Feature sections of the demo report: each takes the partially trained model and data, runs a
small version of the feature's measurement, and adds a section with its numbers and figures."""

from __future__ import annotations

import torch
from torch import nn

from leafscope.applications.detectors import make_detector
from leafscope.applications.figures import roc_curves
from leafscope.applications.ood import evaluate_detectors
from leafscope.data import ImageDataset, noise_like
from leafscope.foliation import PathConfig, WalkConfig, involutivity, walk_experiment
from leafscope.foliation import figures as fol_figures
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
