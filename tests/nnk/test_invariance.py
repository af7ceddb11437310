"""Invariance by the NNK polytope of rotated versions: exact zeros and an independent route."""

import numpy as np
import pytest
import scipy.linalg as sl
import scipy.optimize as so
import torch
from torch import nn

from leafscope.data.transforms import rotate
from leafscope.errors import InputError
from leafscope.nnk.invariance import augmentation_geometry, rotation_invariance


class QuarterTurnSum(nn.Module):
    """Sum of the four quarter turns of the image: invariant to rotations by 90°."""

    def forward(self, x):
        return sum(torch.rot90(x, q, (2, 3)) for q in range(4))


def invariant_model():
    torch.manual_seed(0)
    return nn.Sequential(QuarterTurnSum(), nn.Flatten(), nn.Linear(100, 3))


@pytest.fixture
def images():
    return torch.rand(12, 1, 10, 10, generator=torch.Generator().manual_seed(0))


def test_invariant_features_have_zero_diameter(images):
    res = rotation_invariance(invariant_model(), images, ["1", "2"], angles=(90, 180, 270))
    for name in ("1", "2"):
        assert res[name].diameter.max() < 1e-4 and res[name].spread.max() < 1e-4
    assert res["input"].diameter.min() > 0.1  # the pixels themselves are not invariant


def _reference(center, versions):
    """NNK polytope diameter of one input through scipy nnls on the Cholesky factor."""
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    c, V = unit(center.astype(np.float64)), unit(versions.astype(np.float64))
    K = 1 - ((V[:, None] - V[None]) ** 2).sum(-1) / 4
    b = 1 - ((V - c) ** 2).sum(-1) / 4
    L = np.linalg.cholesky(K + 1e-10 * np.eye(len(K)))
    theta, _ = so.nnls(L.T, sl.solve_triangular(L, b, lower=True))
    sel = np.flatnonzero(theta > 1e-8)
    d = np.linalg.norm(V[sel, None] - V[None, sel], axis=-1)
    return d.max(), len(sel)


def test_input_diameter_matches_scipy_route(images):
    angles = (-40, -20, 15, 30, 50)
    res = rotation_invariance(nn.Flatten(), images, [], angles=angles)["input"]
    versions = torch.stack([rotate(images, a) for a in angles], 1).reshape(12, 5, -1)
    for i in range(12):
        diam, count = _reference(images[i].reshape(-1).numpy(), versions[i].numpy())
        assert res.diameter[i] == pytest.approx(diam, abs=1e-5)
        assert res.n_selected[i] == count
    assert (res.diameter <= res.spread + 1e-7).all() and (res.spread <= 2).all()


def test_identity_layer_equals_input_and_batches_do_not_matter(images):
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 3))
    a = rotation_invariance(model, images, ["0"], batch_size=5)
    b = rotation_invariance(model, images, ["0"], batch_size=64)
    np.testing.assert_allclose(a["0"].diameter, a["input"].diameter, atol=1e-6)
    np.testing.assert_allclose(a["0"].diameter, b["0"].diameter, atol=1e-6)


def test_bad_input(images):
    with pytest.raises(InputError, match="multiple of 360"):
        rotation_invariance(nn.Flatten(), images, [], angles=(0, 90))
    with pytest.raises(InputError, match="at least 2"):
        augmentation_geometry(nn.Flatten(), images, [], lambda x: [x])
