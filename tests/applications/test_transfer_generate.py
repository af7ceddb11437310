"""Transfer medians equal a direct computation; the new head learns; walks keep class and box."""

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from leafscope.applications import (
    fit_linear_head,
    generate_class,
    leaf_random_walk,
    spectral_distance,
    transfer_table,
)
from leafscope.information import DataInformation, point_spectra
from leafscope.testing import LinearSoftmax


class _Set:
    def __init__(self, images, labels, num_classes):
        self.images, self.labels, self.num_classes = images, labels, num_classes


def test_transfer_medians_equal_direct_computation():
    torch.manual_seed(0)
    model = LinearSoftmax(torch.randn(4, 16), torch.randn(4))
    a = torch.rand(30, 1, 4, 4)
    b = torch.rand(30, 1, 4, 4) * 0.2
    ya = (a.flatten(1)[:, 0] > 0.5).long()
    sets = {"a": (_Set(a, ya, 2), _Set(a, ya, 2)), "b": (_Set(b, -torch.ones(30).long(), 0), None)}
    res = transfer_table(model, sets, points=25, reference=a[25:])
    G = DataInformation(model, a[:25], dtype=torch.float64)
    ev, tr = G.eigenvalues(), G.trace()
    hi, lo = ev[:, 0].log10(), ev[:, -1].log10()
    row = res.rows[0]
    assert row.median_log10_highest == pytest.approx(float(hi.median()), abs=1e-10)
    assert row.median_log10_lowest == pytest.approx(float(lo.median()), abs=1e-10)
    assert row.median_delta == pytest.approx(float((hi - lo).median()), abs=1e-10)
    assert row.median_log10_trace == pytest.approx(float(tr.log10().median()), abs=1e-10)
    assert row.transfer_accuracy is not None and row.transfer_accuracy > 0.9
    assert res.rows[1].transfer_accuracy is None
    assert res.distances["a"]["a"] == 0.0 and res.distances["a"]["b"] > 0
    assert res.rows[0].training_distance is not None
    assert "| a |" in res.markdown()


def test_spectral_distance_is_mean_w1_per_eigenvalue():
    torch.manual_seed(1)
    model = LinearSoftmax(torch.randn(3, 6), torch.zeros(3))
    sa = point_spectra(model, torch.rand(20, 6))
    sb = point_spectra(model, 3 * torch.rand(20, 6))
    la, lb = sa.log10_eigenvalues().numpy(), sb.log10_eigenvalues().numpy()
    want = np.mean([wasserstein_distance(la[:, k], lb[:, k]) for k in range(2)])
    assert spectral_distance(sa, sb) == pytest.approx(want)
    assert spectral_distance(sa, sb) == pytest.approx(spectral_distance(sb, sa))


def test_linear_head_recovers_a_linear_rule():
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(300, 5, generator=gen)
    y = (f @ torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0]) > 0).long()
    head = fit_linear_head(f, y, 2)
    assert (head(f).argmax(1) == y).float().mean() > 0.97


def test_walk_keeps_class_and_box(toy):
    model, x, y, *_ = toy
    walk = generate_class(model, x, y, 1, n=4, steps=15, step=0.2, seed=0)
    assert walk.images.shape == (4, 1, 8, 8)
    assert float(walk.images.min()) >= 0 and float(walk.images.max()) <= 1
    assert (walk.predicted == 1).all() and (y[walk.start_index] == 1).all()
    assert (walk.displacement > 0).any()
    again = generate_class(model, x, y, 1, n=4, steps=15, step=0.2, seed=0)
    assert torch.equal(again.images, walk.images)


def test_walk_moves_inside_the_leaf_for_a_linear_model():
    # for a linear model D_x ⊂ row space of W: the displacement has no component outside it
    torch.manual_seed(2)
    w = torch.randn(3, 10)
    model = LinearSoftmax(w, torch.zeros(3))
    start = 0.5 + 0.01 * torch.randn(2, 10)
    walk = leaf_random_walk(model, start, steps=5, step=0.01, keep_class=False, box=None)
    disp = (walk.images - start).double()
    q, _ = torch.linalg.qr(w.T.double())
    outside = disp - (disp @ q) @ q.T
    assert float(outside.norm()) < 1e-5 * max(float(disp.norm()), 1e-12) + 1e-6
