"""Vertical walks stay in ker G; linear models keep predictions exactly; the noise leaf."""

import pytest
import torch
from torch.autograd.functional import jacobian

from leafscope.errors import InputError
from leafscope.foliation import (
    PathConfig,
    WalkConfig,
    flip_horizontal,
    noise_leaf,
    random_line_accuracy,
    total_variation,
    vertical_walk,
)
from leafscope.testing import LinearSoftmax, tiny_mlp


def test_every_vertical_step_lies_in_the_kernel_of_G():
    torch.manual_seed(0)
    model = tiny_mlp(n_in=12, n_classes=4, activation="tanh").double()
    x = torch.randn(2, 12, dtype=torch.float64)
    walk = vertical_walk(model, x, WalkConfig(steps=5, record_every=1, dtype=torch.float64))
    for i in range(2):
        for k in range(5):
            xk = walk.points[i, k].double()
            delta = walk.points[i, k + 1].double() - xk
            jac = jacobian(lambda z: torch.log_softmax(model(z[None]), 1)[0], xk)  # noqa: B023
            assert delta.norm().item() == pytest.approx(0.1, rel=1e-5)
            assert (jac @ delta).abs().max() < 1e-5 * jac.abs().max()


def test_linear_model_keeps_probabilities_along_kernel_walk_but_not_random_lines():
    torch.manual_seed(1)
    model = LinearSoftmax(torch.randn(3, 20), torch.randn(3)).double()
    x = torch.randn(16, 20, dtype=torch.float64)
    labels = model(x).argmax(1)
    cfg = WalkConfig(steps=20, step=5.0, record_every=5, dtype=torch.float64)
    walk = vertical_walk(model, x, cfg, labels=labels)
    assert torch.equal(walk.accuracy(), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(walk.max_prob[:, -1], walk.max_prob[:, 0], atol=1e-9)
    assert walk.distance[:, -1].min() > 90  # moved far (straight: kernel is flat)
    rand = random_line_accuracy(model, x, labels, walk.distance)
    assert rand[0] == 1.0 and rand[-1] < 0.9


def test_noise_leaf_keeps_the_noise_on_a_linear_model():
    torch.manual_seed(2)
    weight = torch.randn(4, 16)
    model = LinearSoftmax(weight).double()
    a, b = torch.rand(3, 16), torch.rand(3, 16)
    cfg = PathConfig(box=None, threshold=0.0, max_steps=400, method="adaptive", dtype=torch.float64)
    res = noise_leaf(
        model, a, b, kernel_steps=20, walk_config=WalkConfig(box=None), path_config=cfg
    )
    assert torch.allclose(res.noise_start, torch.full((3,), 2.0, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(res.kept_fraction, torch.ones(3, dtype=torch.float64), atol=1e-3)


def test_flip_and_total_variation():
    img = torch.zeros(1, 1, 4, 4)
    img[..., 0] = 1.0
    assert torch.equal(flip_horizontal(img)[..., -1], img[..., 0])
    assert float(total_variation(img)[0]) == 4.0
    with pytest.raises(InputError):
        flip_horizontal(torch.zeros(4))
