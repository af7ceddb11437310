"""MaxLogit, energy, ReAct, ViM and the leaf-pixel blend against independent numpy code."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from leafscope.applications import auroc, make_detector
from leafscope.applications.ood_baselines import vim_principal_dim
from leafscope.errors import InputError


@pytest.fixture(scope="module")
def noise():
    return torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(7))


def _numpy_forward(model, x):
    """Penultimate features and logits by running the Sequential by hand, in numpy at the end."""
    body, head = model[:-1], model[-1]
    with torch.no_grad():
        f = body(x).double().numpy()
    w, b = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    return f, f @ w.T + b, w, b


def _lse(z):
    m = z.max(1, keepdims=True)
    return m[:, 0] + np.log(np.exp(z - m).sum(1))


def test_energy_auroc_matches_sklearn_on_numpy_logsumexp(toy, noise):
    model, x, y, xt, _ = toy
    det = make_detector("energy", model).fit(x, y)
    _, logits_in, _, _ = _numpy_forward(model, xt)
    _, logits_out, _, _ = _numpy_forward(model, noise)
    want = roc_auc_score(
        np.r_[np.ones(len(xt)), np.zeros(len(noise))], np.r_[_lse(logits_in), _lse(logits_out)]
    )
    got = auroc(det.score_samples(xt), det.score_samples(noise))
    assert abs(got - want) < 0.005
    np.testing.assert_allclose(det.score_samples(xt), _lse(logits_in), rtol=1e-5, atol=1e-5)


def test_maxlogit_msp_energy_identities(toy):
    model, x, y, xt, _ = toy
    m = make_detector("maxlogit", model).fit(x).score_samples(xt)
    e = make_detector("energy", model).fit(x).score_samples(xt)
    p = make_detector("msp", model).fit(x).score_samples(xt)
    _, logits, _, _ = _numpy_forward(model, xt)
    np.testing.assert_allclose(m, logits.max(1), rtol=1e-5, atol=1e-5)
    # max ℓ ≤ logsumexp ℓ ≤ max ℓ + log C, and MSP = exp(max ℓ − logsumexp ℓ)
    assert np.all(m <= e + 1e-9) and np.all(e <= m + np.log(logits.shape[1]) + 1e-9)
    np.testing.assert_allclose(p, np.exp(m - e), rtol=1e-6)


def test_react_percentile_100_is_energy_and_clips_at_the_percentile(toy, noise):
    model, x, y, xt, _ = toy
    react = make_detector("react", model, percentile=100).fit(x, y)
    energy = make_detector("energy", model).fit(x, y)
    f, _, w, b = _numpy_forward(model, x)
    assert react.threshold_ == pytest.approx(f.max())
    # every training activation is <= the clip, so nothing changes on the training points
    np.testing.assert_allclose(react.score_samples(x), energy.score_samples(x), rtol=1e-5)
    r90 = make_detector("react", model).fit(x, y)
    c = np.percentile(f, 90)
    assert r90.threshold_ == pytest.approx(c)
    fo, _, _, _ = _numpy_forward(model, noise)
    np.testing.assert_allclose(
        r90.score_samples(noise), _lse(np.minimum(fo, c) @ w.T + b), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(InputError, match="percentile must be in"):
        make_detector("react", model, percentile=0)


def _vim_from_the_paper(f_train, logits_train, f_test, logits_test, w, b, d):
    """Wang et al. 2022, eqs. for ViM written out: origin o = −W⁺b, principal space from the
    eigenvectors of the matrix (f−o)ᵀ(f−o), residual off the top-D ones, α by matching the mean
    maximum logit, OOD probability of the virtual logit softmax(ℓ0, ℓ)_0."""
    o = -np.linalg.pinv(w) @ b
    z = f_train - o
    evals, evecs = np.linalg.eig(z.T @ z)
    order = np.argsort(-evals.real)
    r = evecs.real[:, order[d:]]  # the complement of the principal space
    alpha = logits_train.max(1).mean() / np.linalg.norm(z @ r, axis=1).mean()
    v = alpha * np.linalg.norm((f_test - o) @ r, axis=1)
    full = np.c_[v, logits_test]
    log_prob0 = v - _lse(full)  # log of the virtual class's probability (in log: no rounding)
    return -log_prob0  # in-distribution score


def test_vim_matches_an_independent_implementation(toy, noise):
    # tanh features: a spectrum without the ties of dead ReLU units, so the principal space
    # of dimension D is well defined
    _, x, y, xt, _ = toy
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)
    ).eval()
    det = make_detector("vim", model).fit(x, y)
    f, lg, w, b = _numpy_forward(model, x)
    d = vim_principal_dim(f.shape[1])
    assert det.principal_dim_ == d == f.shape[1] // 2
    s_in = _vim_from_the_paper(f, lg, *_numpy_forward(model, xt)[:2], w, b, d)
    s_out = _vim_from_the_paper(f, lg, *_numpy_forward(model, noise)[:2], w, b, d)
    got = auroc(det.score_samples(xt), det.score_samples(noise))
    assert abs(got - auroc(s_in, s_out)) < 0.03
    # the score is a monotone transform of the paper's probability: identical ranking
    both = np.r_[det.score_samples(xt), det.score_samples(noise)]
    ref = np.r_[s_in, s_out]
    assert np.corrcoef(np.argsort(np.argsort(both)), np.argsort(np.argsort(ref)))[0, 1] > 0.999
    with pytest.raises(InputError, match="principal_dim must be in"):
        make_detector("vim", model, principal_dim=f.shape[1]).fit(x, y)


def test_vim_principal_dim_rule():
    assert [vim_principal_dim(n) for n in (2048, 1500, 768, 84, 1)] == [1000, 1000, 512, 42, 1]


def test_knn_default_k_is_the_papers():
    assert make_detector("knn", torch.nn.Linear(2, 2)).k == 50


def test_leaf_pixel_blend_ends_are_leaf_distance_and_pixel_nn(toy, noise):
    model, x, y, xt, _ = toy
    opts = {"max_steps": 3, "n_scale_points": 30}
    det = make_detector("leaf-pixel", model, **opts).fit(x, y)
    d_leaf, d_pixel = det.components(xt)
    leaf = make_detector("leaf-distance", model, max_steps=3).fit(x, y).score_samples(xt)
    pix = make_detector("pixel-nn", model).fit(x, y).score_samples(xt)
    np.testing.assert_allclose(-d_leaf, leaf, rtol=1e-6)
    np.testing.assert_allclose(-d_pixel, pix, rtol=1e-6)
    assert np.all(d_leaf <= d_pixel + 1e-6)  # paths start at the nearest image
    np.testing.assert_allclose(det.combine(d_leaf, d_pixel, 0.0), leaf / det.scale_leaf_)
    np.testing.assert_allclose(det.combine(d_leaf, d_pixel, 1.0), pix / det.scale_pixel_)
    want = -(0.5 * d_leaf / det.scale_leaf_ + 0.5 * d_pixel / det.scale_pixel_)
    np.testing.assert_allclose(det.score_samples(xt), want, rtol=1e-6)
    assert det.scale_leaf_ > 0 and det.scale_pixel_ > 0
    with pytest.raises(InputError, match="weight must be in"):
        make_detector("leaf-pixel", model, weight=1.5)
