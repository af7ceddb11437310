"""Horizontal paths: every step inside D_x, stopping rules, box, resume, dtype, bad arguments."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from leafscope.errors import InputError
from leafscope.foliation import (
    PathConfig,
    PathState,
    continue_paths,
    horizontal_paths,
    start_paths,
)
from leafscope.testing import LinearSoftmax, tiny_cnn, tiny_mlp


def logp_jacobian(model, x):
    """Independent route: Jacobian of log-softmax at one point, (C, n)."""
    f = lambda z: torch.log_softmax(model(z.reshape(1, *x.shape)), 1)[0]  # noqa: E731
    return jacobian(f, x.reshape(-1))


def leaf_residual(model, x, delta):
    """‖delta − P_D delta‖ / ‖delta‖ with D = row space of the log-softmax Jacobian (rank C−1)."""
    jac = logp_jacobian(model, x)
    _, s, vh = torch.linalg.svd(jac, full_matrices=False)
    basis = vh[: jac.shape[0] - 1]
    proj = basis.T @ (basis @ delta)
    return float((delta - proj).norm() / delta.norm())


def test_every_greedy_step_lies_in_the_leaf_and_has_the_step_length():
    torch.manual_seed(0)
    model = tiny_mlp(n_in=12, n_classes=4, activation="tanh").double()
    a, b = torch.randn(2, 12, dtype=torch.float64), torch.randn(2, 12, dtype=torch.float64)
    cfg = PathConfig(step=0.05, max_steps=6, box=None, dtype=torch.float64, threshold=0.0)
    res = horizontal_paths(model, a, b, cfg)
    for pts in res.points:
        assert len(pts) == 7
        for k in range(6):
            delta = pts[k + 1].double() - pts[k].double()
            assert delta.norm().item() == pytest.approx(0.05, rel=1e-5)
            assert leaf_residual(model, pts[k].double(), delta) < 1e-5


def test_rk4_steps_leave_the_leaf_only_at_second_order():
    torch.manual_seed(1)
    model = tiny_mlp(n_in=12, n_classes=4, activation="tanh").double()
    a, b = torch.randn(1, 12, dtype=torch.float64), torch.randn(1, 12, dtype=torch.float64)
    residual = []
    for h in (1e-2, 1e-3):
        cfg = PathConfig(method="rk4", step=h, max_steps=1, box=None, dtype=torch.float64)
        pts = horizontal_paths(model, a, b, cfg).points[0]
        residual.append(leaf_residual(model, pts[0], pts[1] - pts[0]))
    assert residual[1] < residual[0] / 5  # the off-leaf part of a step shrinks with h


def linear_model_and_pair():
    """A linear model whose leaf through ``a`` contains ``b``: the path is a straight line."""
    torch.manual_seed(2)
    weight = torch.randn(4, 10, dtype=torch.float64)
    model = LinearSoftmax(weight).double()
    a = torch.full((1, 10), 0.5, dtype=torch.float64)
    centred = weight - weight.mean(0)
    direction = centred.T @ torch.tensor([1.0, -0.5, 0.2, -0.7], dtype=torch.float64)
    b = a + 0.3 * direction / direction.norm() * 3.0
    return model, a, b


@pytest.mark.parametrize("method", ["greedy", "adaptive", "rk4"])
def test_path_on_a_flat_leaf_stops_at_the_threshold(method):
    model, a, b = linear_model_and_pair()
    d0 = float((b - a).norm())
    cfg = PathConfig(method=method, step=0.1, threshold=0.2, box=None, dtype=torch.float64)
    res = horizontal_paths(model, a, b, cfg)
    assert res.reached == [True] and res.stop_reason == ["reached"]
    assert 0.1 < res.final_distance[0] <= 0.2
    assert len(res.distance[0]) - 1 == math.ceil((d0 - 0.2) / 0.1 - 1e-9)
    assert res.tangent_fraction[0][0] == pytest.approx(1.0, abs=1e-9)


def test_paths_respect_the_box_and_the_step_limit():
    torch.manual_seed(3)
    model = tiny_cnn(n_classes=3)
    a, b = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    res = horizontal_paths(model, a, b, PathConfig(max_steps=15, threshold=0.0))
    assert res.stop_reason == ["max_steps"] * 3
    for pts, dist in zip(res.points, res.distance, strict=True):
        assert len(dist) == 16
        assert pts.min() >= 0.0 and pts.max() <= 1.0


def test_adaptive_distance_never_increases():
    torch.manual_seed(4)
    model = tiny_cnn(n_classes=3)
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    res = horizontal_paths(model, a, b, PathConfig(method="adaptive", max_steps=60))
    for d in res.distance:
        assert all(d[k + 1] < d[k] + 1e-6 for k in range(len(d) - 1))


def test_resume_from_saved_state_equals_one_run(tmp_path):
    torch.manual_seed(5)
    model = tiny_mlp(n_in=12, n_classes=4)
    a, b = torch.rand(2, 12), torch.rand(2, 12) + 1.0
    cfg = PathConfig(max_steps=25, threshold=0.0, box=(0.0, 2.0), dtype=torch.float64)
    full = horizontal_paths(model, a, b, cfg)
    state = start_paths(a, b, cfg)
    continue_paths(model, state, max_iterations=10)
    assert not state.done
    state.save(tmp_path / "state.pt")
    resumed = continue_paths(model, PathState.load(tmp_path / "state.pt")).result()
    assert resumed.distance == full.distance
    assert torch.equal(resumed.points[1], full.points[1])
    assert PathState.load(tmp_path / "state.pt").config.dtype is torch.float64
    assert full.to_json()["config"]["dtype"] == "float64"


def test_float32_path_matches_float64():
    torch.manual_seed(6)
    model = tiny_mlp(n_in=12, n_classes=4)
    a, b = torch.rand(2, 12), torch.rand(2, 12)
    runs = [
        horizontal_paths(model, a, b, PathConfig(max_steps=30, dtype=d, threshold=0.0))
        for d in (torch.float32, torch.float64)
    ]
    gap = max(
        float((p - q).abs().max()) for p, q in zip(runs[0].points, runs[1].points, strict=True)
    )
    assert gap < 1e-4


def test_bad_arguments_are_input_errors():
    model = tiny_mlp(n_in=12, n_classes=4)
    a = torch.rand(2, 12)
    with pytest.raises(InputError, match="start equals end"):
        horizontal_paths(model, a, a.clone())
    with pytest.raises(InputError, match="same shape"):
        horizontal_paths(model, a, torch.rand(3, 12))
    with pytest.raises(InputError, match="unknown path method"):
        horizontal_paths(model, a, torch.rand(2, 12), PathConfig(method="teleport"))
    with pytest.raises(InputError, match="step"):
        horizontal_paths(model, a, torch.rand(2, 12), PathConfig(step=-1.0))
    with pytest.raises(InputError, match="batch"):
        horizontal_paths(model, torch.rand(12), torch.rand(12))
    with pytest.raises(InputError, match="box"):
        PathConfig(box=(1.0, 0.0)).check()
    with pytest.raises(InputError, match=r"not the string 'float64': pass torch\.float64"):
        PathConfig(dtype="float64").check()
    with pytest.raises(InputError, match="torch.float32 or torch.float64"):
        PathConfig(dtype=torch.float16).check()
