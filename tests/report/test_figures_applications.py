"""The application figures return Figures: spectra histograms, ROC curves, image strips."""

import numpy as np
import torch
from matplotlib.figure import Figure

from leafscope.applications import OODResult
from leafscope.report.figures import applications as figures


def test_figures_return_figures():
    logs = {"a": np.random.default_rng(0).normal(size=(20, 3)).tolist()}
    assert isinstance(figures.spectra_histograms(logs), Figure)
    imgs = torch.rand(5, 1, 28, 28)
    assert isinstance(figures.image_grid(imgs, [1] * 5, [0.9] * 5, ncols=3), Figure)
    assert isinstance(figures.denoising_strips({"clean": imgs, "noisy": imgs}, n=3), Figure)


def test_roc_curves_draw_one_line_per_detector_and_the_chance_line():
    results = [
        OODResult("msp", "noise", 1.0, 0.0, in_scores=[0.9, 0.8], out_scores=[0.1, 0.2]),
        OODResult("energy", "noise", 0.5, 1.0, in_scores=[0.1, 0.9], out_scores=[0.5, 0.5]),
        OODResult("msp", "fashion", 0.5, 1.0, in_scores=[0.1], out_scores=[0.2]),
    ]
    fig = figures.roc_curves(results, "noise")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3  # msp, energy, chance
    fpr, tpr = lines[0].get_data()  # perfect separation: the curve passes through (0, 1)
    assert any(f == 0 and t == 1 for f, t in zip(fpr, tpr, strict=True))
