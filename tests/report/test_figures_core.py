"""The core figures show their inputs: loss and accuracy (in percent) per epoch or step, the
eigenvalue boxes and trace histograms per point set, the trace quartiles and rank fractions
across checkpoints."""

import numpy as np
import pytest
import torch

from leafscope.information.spectrum import PointSpectra
from leafscope.report.figures import core as figures


def _spectra(seed: int, n: int = 20, k: int = 3) -> PointSpectra:
    gen = torch.Generator().manual_seed(seed)
    eig = torch.sort(10 ** (4 * torch.rand(n, k, generator=gen, dtype=torch.float64) - 3))[0]
    eig = eig.flip(1)  # descending
    rank = torch.randint(1, k + 1, (n,), generator=gen)
    return PointSpectra(eig, eig.sum(1), rank, torch.zeros(n).long(), torch.ones(n))


def test_training_curve_draws_loss_and_accuracy_in_percent():
    history = [
        {"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.3 * e, "val_loss": 2.1 / e,
         "val_accuracy": 0.28 * e}
        for e in (1, 2, 3)
    ]  # fmt: skip
    steps = [
        {"epoch_fraction": 0.5, "val_accuracy": 0.2},
        {"epoch_fraction": 1.5, "val_accuracy": 0.4},
    ]
    fig = figures.training_curve(history, steps)
    loss, acc = fig.axes
    assert [ln.get_label() for ln in loss.lines] == ["train", "val"]
    assert list(loss.lines[0].get_xdata()) == [1, 2, 3]
    assert list(loss.lines[1].get_ydata()) == pytest.approx([2.1, 1.05, 0.7])
    assert list(acc.lines[0].get_ydata()) == pytest.approx([30, 60, 90])
    assert list(acc.lines[2].get_xdata()) == [0.5, 1.5]
    assert list(acc.lines[2].get_ydata()) == pytest.approx([20, 40])
    assert (loss.get_xlabel(), loss.get_ylabel()) == ("epoch", "cross-entropy")
    assert acc.get_ylabel() == "accuracy (%)"
    # no validation recorded: only the training curves
    train_only = [{**h, "val_loss": None, "val_accuracy": None} for h in history]
    assert [ln.get_label() for ln in figures.training_curve(train_only).axes[0].lines] == ["train"]


def test_spectra_comparison_one_box_per_eigenvalue_and_set_and_a_trace_histogram():
    spectra = {"mnist": _spectra(0), "noise": _spectra(1)}
    fig = figures.spectra_comparison(spectra)
    ev, tr = fig.axes
    assert len(ev.patches) == 2 * 3  # one box per (set, eigenvalue)
    assert [t.get_text() for t in ev.get_legend().get_texts()] == ["mnist", "noise"]
    logs = {name: s.log10_eigenvalues().numpy() for name, s in spectra.items()}
    flat = [ln for ln in ev.lines if len(set(ln.get_ydata())) == 1 and len(ln.get_xdata()) == 2]
    medians = sorted(ln.get_ydata()[0] for ln in flat)
    for values in logs.values():
        for i in range(3):
            assert any(m == pytest.approx(np.median(values[:, i])) for m in medians)
    counts = {}
    for bar in tr.patches:  # two histograms of 30 bins, each counting all the points
        counts[bar.get_facecolor()] = counts.get(bar.get_facecolor(), 0) + bar.get_height()
    assert sorted(counts.values()) == [20, 20]
    assert tr.get_xlabel() == "log10 tr G" and ev.get_ylabel() == "log10 λ_i of G"


def test_information_across_training_median_trace_and_rank_fractions():
    steps = [0, 10, 20]
    spectra = [_spectra(s) for s in steps]
    fig = figures.information_across_training(steps, spectra, max_rank=3)
    tr, rk = fig.axes
    (median,) = tr.lines
    assert list(median.get_xdata()) == steps
    want = [np.median(s.log10_trace().numpy()) for s in spectra]
    assert list(median.get_ydata()) == pytest.approx(want)
    tops = {}
    for bar in rk.patches:  # stacked fractions of the ranks: one per checkpoint
        x = round(bar.get_x() + bar.get_width() / 2)
        tops[x] = max(tops.get(x, 0.0), bar.get_y() + bar.get_height())
    assert tops == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})
    assert [t.get_text() for t in rk.get_xticklabels()] == ["0", "10", "20"]


def test_training_steps_curve_per_step_loss_its_mean_and_the_checkpoints():
    losses = [2.0 - 0.1 * i for i in range(12)]
    checkpoints = [{"step": 6, "val_loss": 1.5, "val_accuracy": 0.4},
                   {"step": 12, "val_loss": 1.0, "val_accuracy": 0.7}]  # fmt: skip
    fig = figures.training_steps_curve(losses, checkpoints, epoch_steps=[6], smooth=4)
    loss, acc = fig.axes
    raw, mean, val = loss.lines[:3]
    assert list(raw.get_xdata()) == list(range(1, 13)) and list(raw.get_ydata()) == losses
    assert list(mean.get_xdata()) == list(range(4, 13))
    assert list(mean.get_ydata()) == pytest.approx(np.convolve(losses, np.ones(4) / 4, "valid"))
    assert list(val.get_xdata()) == [6, 12] and list(val.get_ydata()) == [1.5, 1.0]
    assert list(acc.lines[0].get_ydata()) == pytest.approx([40, 70])
    epoch_marks = [ln for ln in acc.lines if list(ln.get_xdata()) == [6, 6]]
    assert len(epoch_marks) == 1  # the end of epoch 1
    assert loss.get_xlabel() == acc.get_xlabel() == "optimizer step"
