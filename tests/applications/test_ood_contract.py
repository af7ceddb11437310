"""Every OOD detector passes the same contract: shapes, sign, determinism, NotFittedError."""

import numpy as np
import pytest
import torch

from leafscope.applications import DETECTORS, aggregate_seeds, evaluate_detectors, make_detector
from leafscope.errors import InputError, NotFittedError

FAST = {"leaf-distance": {"max_steps": 4}, "dim-spectrum": {"max_fit_points": 80}}


def build(name, model, seed=0):
    return make_detector(name, model, random_state=seed, **FAST.get(name, {}))


@pytest.fixture(scope="module")
def out_points():
    gen = torch.Generator().manual_seed(5)
    return torch.rand(40, 1, 8, 8, generator=gen)  # uniform noise


@pytest.mark.parametrize("name", list(DETECTORS))
def test_contract(name, toy, out_points):
    model, x, y, xt, _ = toy
    det = build(name, model)
    with pytest.raises(NotFittedError, match="fit"):
        det.score_samples(xt)
    assert det.fit(x, y) is det
    s_in, s_out = det.score_samples(xt), det.score_samples(out_points)
    assert s_in.shape == (len(xt),) and s_in.dtype == np.float64
    assert np.isfinite(s_in).all() and np.isfinite(s_out).all()
    # sign convention: clean blobs score higher than uniform noise on this easy pair
    assert s_in.mean() > s_out.mean()
    again = build(name, model).fit(x, y).score_samples(xt)
    np.testing.assert_allclose(again, s_in, rtol=1e-6, atol=1e-9)


def test_random_state_subsamples_deterministically(toy):
    model, x, y, xt, _ = toy
    a = make_detector("knn", model, max_fit_points=50, random_state=3).fit(x, y)
    b = make_detector("knn", model, max_fit_points=50, random_state=3).fit(x, y)
    c = make_detector("knn", model, max_fit_points=50, random_state=4).fit(x, y)
    assert a.n_fit_points_ == 50
    np.testing.assert_array_equal(a.score_samples(xt), b.score_samples(xt))
    assert not np.array_equal(a.score_samples(xt), c.score_samples(xt))


def test_bad_inputs_are_named(toy):
    model, x, y, _, _ = toy
    with pytest.raises(InputError, match="unknown detector"):
        make_detector("nope", model)
    with pytest.raises(InputError, match="y must have shape"):
        make_detector("msp", model).fit(x, y[:3])
    with pytest.raises(InputError, match="NaN"):
        make_detector("msp", model).fit(x).score_samples(torch.full((2, 1, 8, 8), float("nan")))


def test_mahalanobis_matches_direct_formula(toy):
    from leafscope.models.features import penultimate_features

    model, x, y, xt, _ = toy
    det = make_detector("mahalanobis", model, ridge=0.0).fit(x, y)
    f, ft = (
        penultimate_features(model, x).features.double().numpy(),
        penultimate_features(model, xt).features.double(),
    )
    mu = np.stack([f[y.numpy() == c].mean(0) for c in (0, 1)])
    cen = f - mu[y.numpy()]
    prec = np.linalg.pinv(cen.T @ cen / len(f))
    d = ft.numpy()[:, None] - mu[None]
    want = -np.einsum("ncf,fg,ncg->nc", d, prec, d).min(1)
    np.testing.assert_allclose(det.score_samples(xt), want, rtol=1e-5, atol=1e-6)


def test_evaluation_and_aggregation(toy, out_points):
    model, x, y, xt, _ = toy
    dets = {n: make_detector(n, model).fit(x, y) for n in ("msp", "energy")}
    runs = evaluate_detectors(dets, xt, {"noise": out_points}, seed=0)
    runs += evaluate_detectors(dets, xt, {"noise": out_points}, seed=1)
    table = aggregate_seeds(runs)
    assert [(r["detector"], r["n_seeds"]) for r in table] == [("msp", 2), ("energy", 2)]
    assert table[0]["auroc_std"] == 0.0 and 0.5 < table[0]["auroc"] <= 1.0


def _tied_centred_features(model, x, y):
    from leafscope.models.features import penultimate_features

    f = penultimate_features(model, x).features.double().numpy()
    mu = np.stack([f[y.numpy() == c].mean(0) for c in (0, 1)])
    return f - mu[y.numpy()], mu


def _scores(model, xt, mu, prec):
    from leafscope.models.features import penultimate_features

    d = penultimate_features(model, xt).features.double().numpy()[:, None] - mu[None]
    return -np.einsum("ncf,fg,ncg->nc", d, prec, d).min(1)


def test_mahalanobis_fixed_shrinkage_matches_formula(toy):
    model, x, y, xt, _ = toy
    cen, mu = _tied_centred_features(model, x, y)
    S = cen.T @ cen / len(cen)
    s = 0.3
    cov = (1 - s) * S + s * np.trace(S) / len(S) * np.eye(len(S))
    det = make_detector("mahalanobis", model, shrinkage=s).fit(x, y)
    np.testing.assert_allclose(det.covariance_, cov, rtol=1e-10, atol=1e-12)
    want = _scores(model, xt, mu, np.linalg.inv(cov))
    np.testing.assert_allclose(det.score_samples(xt), want, rtol=1e-6)


def test_mahalanobis_ledoit_wolf_matches_the_paper_formula(toy):
    # Ledoit & Wolf (2004): δ = min(b̄², d²)/d² with d² = ‖S − μI‖²_F / p and
    # b̄² = Σ_k ‖x_k x_kᵀ − S‖²_F / (n² p), target μI with μ = tr S / p.
    model, x, y, xt, _ = toy
    cen, mu = _tied_centred_features(model, x, y)
    n, p = cen.shape
    S = cen.T @ cen / n
    m = np.trace(S) / p
    d2 = ((S - m * np.eye(p)) ** 2).sum() / p
    b2 = sum(((np.outer(v, v) - S) ** 2).sum() for v in cen) / (n**2 * p)
    delta = min(b2, d2) / d2
    cov = (1 - delta) * S + delta * m * np.eye(p)
    det = make_detector("mahalanobis", model, shrinkage="ledoit-wolf").fit(x, y)
    np.testing.assert_allclose(det.covariance_, cov, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        det.score_samples(xt), _scores(model, xt, mu, np.linalg.pinv(cov)), rtol=1e-6
    )
    oas = make_detector("mahalanobis", model, shrinkage="oas").fit(x, y).score_samples(xt)
    assert np.isfinite(oas).all()


@pytest.mark.parametrize("bad", ["ledoit", 1.5, -0.1, True])
def test_mahalanobis_bad_shrinkage_is_named(toy, bad):
    with pytest.raises(InputError, match="shrinkage must be None, 'ledoit-wolf', 'oas'"):
        make_detector("mahalanobis", toy[0], shrinkage=bad)


def test_detector_hooks_are_abstract(toy):
    from leafscope.applications.ood import OODDetector

    class FitOnly(OODDetector):
        def _fit(self, x, y):
            pass

    with pytest.raises(TypeError, match="_score"):
        FitOnly(toy[0])
    with pytest.raises(TypeError, match="abstract"):
        OODDetector(toy[0])
