"""Export: G as a SciPy LinearOperator; the DIM scores as a pytorch-ood Detector and an OpenOOD
postprocessor, on toys."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.utils.data import DataLoader, TensorDataset

from leafscope.applications.export import DIMDetector, DIMPostprocessor, information_operator
from leafscope.applications.metrics import auroc
from leafscope.errors import InputError, NotFittedError
from leafscope.information import DataInformation
from leafscope.testing import tiny_cnn, tiny_mlp


def test_operator_is_g_and_eigsh_finds_its_spectrum():
    torch.manual_seed(0)
    model, x = tiny_cnn(), torch.rand(1, 1, 8, 8)
    G = information_operator(model, x)
    assert isinstance(G, LinearOperator) and G.shape == (64, 64) and G.dtype == np.float64
    exact = DataInformation(model, x, dtype=torch.float64)
    dense = exact.dense()[0].numpy()
    assert np.allclose(G @ np.eye(64), dense, atol=1e-14)  # matmat
    v = np.random.default_rng(0).standard_normal(64)
    assert np.allclose(G.matvec(v), dense @ v, atol=1e-14)
    assert np.allclose(G.rmatvec(v), G.matvec(v))  # symmetric
    k = exact.num_classes - 1  # the rank of G
    top = np.sort(eigsh(G, k=k, which="LA", return_eigenvectors=False))[::-1]
    assert np.allclose(top, exact.eigenvalues()[0].numpy(), rtol=1e-8)
    null = exact.project_kernel(torch.from_numpy(v))[0].numpy()
    assert np.abs(G @ null).max() < 1e-12
    assert torch.allclose(G.probs, exact.probs[0])


def test_operator_takes_a_point_without_a_batch_axis():
    torch.manual_seed(0)
    model = tiny_mlp(n_in=5, n_classes=3)
    x = torch.rand(5)
    a, b = information_operator(model, x), information_operator(model, x[None])
    v = np.ones(5)
    assert np.allclose(a @ v, b @ v)


def _toy():
    """A 3-class MLP trained briefly on three Gaussian blobs; noise far away is OOD."""
    torch.manual_seed(0)
    centres = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = torch.arange(300) % 3
    x = centres[y] + 0.3 * torch.randn(300, 4)
    model = tiny_mlp(n_in=4, n_classes=3)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ood = 6 * torch.randn(100, 4)
    return model.eval(), x, y, ood


def test_pytorch_ood_style_detector():
    model, x, y, ood = _toy()
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    trace = DIMDetector(model)  # dim-trace needs no fit
    scores = trace(x[:5])
    assert scores.shape == (5,) and scores.dtype == torch.float64
    expected = DataInformation(model, x[:5], dtype=torch.float64).trace().log10()
    assert torch.allclose(scores, expected)  # outlier score = log10 tr G = −score_samples
    spectrum = DIMDetector(model, "dim-spectrum", max_fit_points=200)
    with pytest.raises(NotFittedError, match="call fit"):
        spectrum.predict(x[:2])
    assert spectrum.fit(loader) is spectrum
    assert spectrum.detector.n_fit_points_ == 200
    inside, outside = spectrum.predict(x[200:]), spectrum.predict(ood)
    assert auroc(-inside.numpy(), -outside.numpy()) > 0.9  # OOD scores higher
    with pytest.raises(InputError, match="input space"):
        spectrum.fit_features(x, y)
    with pytest.raises(InputError, match="unknown DIM score"):
        DIMDetector(model, "energy")


@pytest.mark.skipif(importlib.util.find_spec("pytorch_ood") is None, reason="pytorch-ood absent")
def test_is_a_pytorch_ood_detector_when_installed():
    try:
        from pytorch_ood.api import Detector
    except Exception as exc:  # noqa: BLE001 - e.g. a torchvision that does not load
        pytest.skip(f"pytorch-ood does not import here ({type(exc).__name__})")
    model, *_ = _toy()
    assert isinstance(DIMDetector(model), Detector)


def test_openood_style_postprocessor():
    model, x, y, ood = _toy()
    train = [{"data": x[i : i + 50], "label": y[i : i + 50]} for i in range(0, 200, 50)]
    test_id = [{"data": x[200:], "label": y[200:]}]
    test_ood = [{"data": ood, "label": torch.full((100,), -1)}]
    post = DIMPostprocessor(None, score="dim-spectrum", fit_points=200)
    post.setup(model, {"train": train}, {})
    with torch.no_grad():  # OpenOOD's evaluator runs without gradients
        pred, conf, label = post.inference(model, test_id)
    assert pred.shape == conf.shape == label.shape == (100,)
    assert np.array_equal(label, y[200:].numpy())
    assert np.array_equal(pred, model(x[200:]).argmax(1).numpy())
    _, conf_ood, _ = post.inference(model, test_ood)
    assert auroc(conf, conf_ood) > 0.9  # conf: higher = in-distribution
    pred2, conf2 = post.postprocess(model, x[200:210])
    assert np.allclose(conf2.numpy(), conf[:10])
    trace = DIMPostprocessor()
    trace.setup(model, {}, {})
    assert trace.inference(model, test_id)[1].shape == (100,)
    with pytest.raises(InputError, match="train"):
        DIMPostprocessor(score="dim-spectrum").setup(model, {}, {})
