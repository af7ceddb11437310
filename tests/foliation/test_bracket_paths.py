"""Iterated brackets and commutator-loop paths on distributions with known answers."""

import pytest
import torch

from leafscope.errors import InputError
from leafscope.foliation import lie_brackets
from leafscope.foliation.bracket_paths import (
    BracketPathConfig,
    bracket_levels,
    bracket_path,
    bracket_paths,
    bracket_span,
    commutator_loop,
    field_brackets,
    model_fields,
)
from leafscope.testing import tiny_mlp

D64 = torch.float64


def heisenberg(z):
    """X = ∂x − y/2 ∂z, Y = ∂y + x/2 ∂z on R³: [X, Y] = ∂z."""
    x, y, _ = z
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    return torch.stack([torch.stack([one, zero, -y / 2]), torch.stack([zero, one, x / 2])])


def engel(z):
    """X1 = ∂1, X2 = ∂2 + x1 ∂3 + x3 ∂4 on R⁴: [X1, X2] = ∂3, [X2, [X1, X2]] = −∂4."""
    x1, _, x3, _ = z
    one, zero = torch.ones_like(x1), torch.zeros_like(x1)
    return torch.stack([torch.stack([one, zero, zero, zero]), torch.stack([zero, one, x1, x3])])


def flat(z):
    """∂x, ∂y on R³: involutive, the leaves are the planes z = const."""
    one, zero = torch.ones_like(z[0]), torch.zeros_like(z[0])
    return torch.stack([torch.stack([one, zero, zero]), torch.stack([zero, one, zero])])


def twisted(z):
    """A nonlinear pair on R³ (for the ε² law of the loop)."""
    x, y, w = z
    return torch.stack(
        [
            torch.stack([torch.cos(w), torch.sin(w), y**2]),
            torch.stack([x * y, torch.ones_like(x) + w, torch.sin(x)]),
        ]
    )


def rank(rows, rtol=1e-10):
    return int(torch.linalg.matrix_rank(rows, rtol=rtol))


def test_levels_of_heisenberg_and_engel_have_the_known_growth():
    z = torch.tensor([0.3, -0.2, 0.1], dtype=D64)
    l1, l2, l3 = bracket_levels(heisenberg, z, 3)
    assert torch.allclose(l2, torch.tensor([[0.0, 0.0, 1.0]], dtype=D64), atol=1e-15)
    assert l3.abs().max() < 1e-15  # ∂z is central
    ranks = [rank(torch.cat([l1, l2, l3][: k + 1])) for k in range(3)]
    assert ranks == [2, 3, 3]
    w = torch.tensor([0.5, -1.0, 0.7, 2.0], dtype=D64)
    e1, e2, e3 = bracket_levels(engel, w, 3)
    assert torch.allclose(e2, torch.tensor([[0.0, 0.0, 1.0, 0.0]], dtype=D64))
    # rows c·P + p: [X1, B] = 0, [X2, B] = −∂4
    assert torch.allclose(e3, torch.tensor([[0.0, 0, 0, 0], [0, 0, 0, -1]], dtype=D64))
    assert [rank(torch.cat([e1, e2, e3][: k + 1])) for k in range(3)] == [2, 3, 4]


def test_level_two_matches_lie_brackets_of_the_model():
    model = tiny_mlp(n_in=5, n_classes=4, hidden=6, activation="gelu").double()
    x = torch.rand(2, 5, dtype=D64)
    fields, brackets = lie_brackets(model, x)
    fn = model_fields(model.eval(), (5,))
    for i in range(2):
        f, b = field_brackets(fn, x[i])
        assert torch.allclose(f, fields[i], atol=1e-14)
        assert torch.allclose(b, brackets[i], atol=1e-13)


def test_level_three_matches_finite_differences_of_level_two():
    model = tiny_mlp(n_in=4, n_classes=3, hidden=5, activation="tanh").double().eval()
    fn = model_fields(model, (4,), count=2)
    z = torch.rand(4, dtype=D64)
    fields, b, l3 = bracket_levels(fn, z, 3)
    h = 1e-5

    def level2(w):
        return field_brackets(fn, w)[1]

    for c in range(2):
        d_b = (level2(z + h * fields[c]) - level2(z - h * fields[c])) / (2 * h)
        d_x = (fn(z + h * b[0]) - fn(z - h * b[0]))[c] / (2 * h)
        assert torch.allclose(l3[c], d_b[0] - d_x, atol=1e-7)


def test_relu_brackets_of_every_level_stay_in_d_and_smooth_ones_leave_it():
    x = torch.rand(2, 8, dtype=D64)
    relu = bracket_span(tiny_mlp(n_in=8, n_classes=4, hidden=10, activation="relu"), x)
    assert relu.rows == [3, 6, 15]
    assert max(relu.rank[0]) == 3
    for level in (1, 2):  # the brackets add nothing (rank of D itself may drop in dead units)
        assert relu.rank[level] == relu.rank[0]
    gelu = bracket_span(tiny_mlp(n_in=8, n_classes=4, hidden=10, activation="gelu"), x)
    assert gelu.rank[0] == [3, 3] and min(gelu.rank[1]) > 3 and min(gelu.rank[2]) == 8
    assert gelu.to_json()["mean_rank"] == [3.0, *gelu.mean_rank()[1:]]
    with pytest.raises(InputError, match="levels"):
        bracket_levels(heisenberg, x[0, :3], 4)


def test_commutator_loop_moves_by_eps_squared_bracket():
    z = torch.zeros(3, dtype=D64)
    for eps in (0.1, 0.01):  # Heisenberg: exact, ε² ∂z
        move = commutator_loop(heisenberg, z, 0, 1, eps) - z
        assert torch.allclose(move, torch.tensor([0, 0, eps**2], dtype=D64), atol=1e-15)
    back = commutator_loop(heisenberg, z, 1, 0, 0.1) - z  # swapped legs: −ε²[X, Y]
    assert torch.allclose(back, torch.tensor([0, 0, -0.01], dtype=D64), atol=1e-15)
    w = torch.tensor([0.2, -0.4, 0.3], dtype=D64)
    bracket = field_brackets(twisted, w)[1][0]
    errors = []
    for eps in (0.02, 0.01):
        move = commutator_loop(twisted, w, 0, 1, eps) - w
        errors.append(float((move / eps**2 - bracket).norm()))
    assert errors[1] < 0.6 * errors[0]  # error / ε² is O(ε)
    assert errors[1] < 0.05 * float(bracket.norm())


def test_loops_reach_a_vertical_target_that_greedy_steps_cannot():
    start = torch.zeros(3, dtype=D64)
    end = torch.tensor([0.0, 0.0, 1.0], dtype=D64)
    cfg = BracketPathConfig(box=None, threshold=1e-3, max_steps=100)
    x, rec = bracket_path(heisenberg, start, end, cfg)
    assert rec.stop_reason == "reached" and (x - end).norm() <= 1e-3
    assert "loop" in rec.moves
    leaf_only = BracketPathConfig(box=None, threshold=1e-3, max_steps=100, loops=False)
    x0, rec0 = bracket_path(heisenberg, start, end, leaf_only)
    assert rec0.stop_reason == "stalled" and torch.equal(x0, start)
    # a generic target: steps inside D, then loops
    far = torch.tensor([1.0, -0.5, 0.8], dtype=D64)
    x1, rec1 = bracket_path(heisenberg, start, far, cfg)
    assert rec1.stop_reason == "reached" and {"step", "loop"} <= set(rec1.moves)


def test_an_involutive_distribution_cannot_be_left():
    start, end = torch.zeros(3, dtype=D64), torch.tensor([0.5, 0.2, 1.0], dtype=D64)
    x, rec = bracket_path(
        flat, start, end, BracketPathConfig(box=None, max_steps=200, threshold=0.5)
    )
    assert rec.stop_reason == "stalled"
    assert float(x[2]) == 0.0 and rec.distance[-1] == pytest.approx(1.0, abs=1e-9)


def test_bracket_paths_on_a_model_get_closer_and_validate_settings():
    model = tiny_mlp(n_in=6, n_classes=3, hidden=8, activation="tanh")
    gen = torch.Generator().manual_seed(0)
    start, end = torch.rand(2, 6, generator=gen), torch.rand(2, 6, generator=gen)
    res = bracket_paths(model, start, end, BracketPathConfig(max_steps=30, threshold=0.0))
    assert all(r < 1 for r in res.relative_distance)
    assert res.final.shape == (2, 6) and len(res.to_json()["paths"]) == 2
    with pytest.raises(InputError, match="min_tangent"):
        BracketPathConfig(min_tangent=2).check()
    with pytest.raises(InputError, match="loop_step"):
        BracketPathConfig(loop_step=0).check()
