"""The application figures show their inputs: histogram heights and ranges of the spectra, the
images (and titles) of the grids and strips, one ROC line per detector, one bar per (setting,
detector, out set)."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from leafscope.applications import OODResult
from leafscope.report.figures import applications as figures
from leafscope.report.figures.samples import shared_range


def _image(ax) -> np.ndarray:
    (im,) = ax.images
    return np.asarray(im.get_array())


def test_spectra_histograms_are_density_histograms_of_the_highest_and_lowest_eigenvalue():
    rng = np.random.default_rng(0)
    logs = {"a": rng.normal(size=(50, 3)), "b": rng.normal(2.0, 0.5, size=(30, 3))}
    fig = figures.spectra_histograms({k: v.tolist() for k, v in logs.items()}, bins=10)
    assert len(fig.axes) == 2
    for ax, col in zip(fig.axes, (0, -1), strict=True):
        assert len(ax.patches) == 2  # one step outline per data set
        for patch, values in zip(ax.patches, logs.values(), strict=True):
            xy = patch.get_xy()
            heights, edges = np.histogram(values[:, col], bins=10, density=True)
            assert xy[:, 0].min() == pytest.approx(edges[0])
            assert xy[:, 0].max() == pytest.approx(edges[-1])
            assert np.sort(np.unique(xy[:, 1]))[-1] == pytest.approx(heights.max())
        assert ax.get_ylabel() == "density"
    assert "highest" in fig.axes[0].get_xlabel() and "lowest" in fig.axes[1].get_xlabel()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]


def test_image_grid_draws_each_image_with_its_title_and_hides_the_spare_cells():
    imgs = torch.rand(5, 1, 6, 6) * 1.4 - 0.2  # some pixels outside [0, 1]
    fig = figures.image_grid(imgs, [1, 2, 3, 4, 5], [0.9, 0.8, 0.7, 0.6, 0.5], ncols=3, title="t")
    axes = fig.axes
    assert len(axes) == 6  # 2 rows of 3
    for k, ax in enumerate(axes[:5]):
        np.testing.assert_allclose(_image(ax), imgs[k, 0].clamp(0, 1).numpy(), rtol=1e-6)
        assert ax.images[0].get_clim() == (0.0, 1.0) and ax.images[0].get_cmap().name == "gray"
        assert ax.get_title() == f"{k + 1} ({0.9 - 0.1 * k:.2f})"
    assert not axes[5].images and not axes[5].axison
    assert fig._suptitle.get_text() == "t"


def test_image_grid_draws_rgb_in_colour_and_vectors_as_bars_on_shared_limits():
    rgb = torch.rand(2, 3, 4, 4)
    fig = figures.image_grid(rgb, ncols=2)
    for k, ax in enumerate(fig.axes):
        np.testing.assert_allclose(_image(ax), rgb[k].permute(1, 2, 0).numpy(), rtol=1e-6)
        assert ax.get_title() == ""  # no labels given
    vectors = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    fig = figures.image_grid(vectors, [0, 1], ncols=2)
    limits = shared_range(vectors)
    for k, ax in enumerate(fig.axes):
        assert [p.get_height() for p in ax.patches] == pytest.approx(vectors[k].tolist())
        assert ax.get_ylim() == pytest.approx(limits)  # one scale for the whole grid


def test_denoising_strips_one_row_per_method_with_its_images():
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 1, 5, 5, generator=gen)
    noisy = (clean + 0.3 * torch.randn(4, 1, 5, 5, generator=gen)).clamp(0, 1)
    fig = figures.denoising_strips({"clean": clean, "noisy": noisy}, n=3)
    axes = np.array(fig.axes).reshape(2, 3)
    for row, (name, images) in enumerate((("clean", clean), ("noisy", noisy))):
        assert axes[row, 0].get_ylabel() == name
        for j in range(3):
            np.testing.assert_allclose(_image(axes[row, j]), images[j, 0].numpy(), rtol=1e-6)


def test_roc_curves_draw_one_line_per_detector_and_the_chance_line():
    results = [
        OODResult("msp", "noise", 1.0, 0.0, in_scores=[0.9, 0.8], out_scores=[0.1, 0.2]),
        OODResult("energy", "noise", 0.5, 1.0, in_scores=[0.1, 0.9], out_scores=[0.5, 0.5]),
        OODResult("msp", "fashion", 0.5, 1.0, in_scores=[0.1], out_scores=[0.2]),
    ]
    fig = figures.roc_curves(results, "noise")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3  # msp, energy, chance
    fpr, tpr = lines[0].get_data()  # perfect separation: the curve passes through (0, 1)
    assert any(f == 0 and t == 1 for f, t in zip(fpr, tpr, strict=True))
    assert list(lines[2].get_xdata()) == [0, 1] and list(lines[2].get_ydata()) == [0, 1]
    for line in lines[:2]:  # ROC curves run from (0, 0) to (1, 1), never down
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        assert (x[0], y[0], x[-1], y[-1]) == (0, 0, 1, 1)
        assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["msp (1.000)", "energy (0.500)"]
    assert ax.get_title() == "in vs noise" and "false positive" in ax.get_xlabel()


def test_ood_protocol_bars_one_bar_per_detector_and_out_set_with_its_metric():
    table = [
        {"setting": s, "detector": d, "out_dataset": o, "auroc": v, "auroc_std": 0.01}
        for s, base in (("plain", 0.6), ("rotated", 0.7))
        for d, step in (("msp", 0.0), ("leaf-distance", 0.1))
        for o, v in (("noise", base + step), ("fashion", base + step + 0.05))
    ]
    fig = figures.ood_protocol_bars(table)
    assert len(fig.axes) == 2
    for ax, setting in zip(fig.axes, ("plain", "rotated"), strict=True):
        bars = [p for p in ax.patches if p.get_height() > 0]
        want = [r["auroc"] for r in table if r["setting"] == setting]
        assert sorted(b.get_height() for b in bars) == pytest.approx(sorted(want))
        assert [t.get_text() for t in ax.get_xticklabels()] == ["noise", "fashion"]
        assert ax.get_ylabel() == "AUROC" and setting in ax.get_title()
        hatched = [b for b in bars if b.get_hatch()]
        assert len(hatched) == 2  # the leaf detector's bars, one per out set
        colours = {to_rgba(b.get_facecolor()) for b in bars}
        assert len(colours) == 2  # one colour per detector
