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


def test_linear_head_is_the_penalised_maximum_likelihood_solution():
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(240) % 4
    y[y == 2] = 3  # class 2 absent from the training labels
    f = torch.randn(4, 6, generator=gen)[y] + 1.5 * torch.randn(240, 6, generator=gen) + 3.0
    wd = 1e-2
    head = fit_linear_head(f, y, 4, weight_decay=wd)
    assert not (head(f).argmax(1) == 2).any()
    with torch.no_grad():
        p = head(f).double().softmax(1)[:, [0, 1, 3]]
    onehot = torch.nn.functional.one_hot(y, 4).double()[:, [0, 1, 3]]
    # stationarity of mean CE + wd/2 |W_std|^2 in the standardised features z
    z = (f.double() - f.double().mean(0)) / f.double().std(0)
    w_std = head.weight.double()[[0, 1, 3]] * f.double().std(0)
    grad_w = (p - onehot).T @ z / len(y) + wd * w_std
    grad_b = (p - onehot).mean(0)
    assert grad_w.abs().max() < 1e-3 and grad_b.abs().max() < 1e-3
    # two classes: softmax of the two rows equals scikit-learn's binary probabilities
    from sklearn.linear_model import LogisticRegression

    yb = (y == 3).long()
    two = fit_linear_head(f, yb, 2, weight_decay=wd)
    ref = LogisticRegression(C=1 / (wd * len(yb))).fit(z.numpy(), yb.numpy())
    want = torch.from_numpy(ref.predict_proba(z.numpy()))
    torch.testing.assert_close(two(f).double().softmax(1), want, atol=1e-4, rtol=0)


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
