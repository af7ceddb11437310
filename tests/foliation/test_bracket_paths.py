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
    next_level,
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


def filiform(z):
    """X1 = ∂1, X2 = ∂2 + x1 ∂3 + x3 ∂4 + x4 ∂5 on R⁵: each level adds one direction,
    [X1, X2] = ∂3, [X2, [X1, X2]] = −∂4, [X2, [X2, [X1, X2]]] = ∂5."""
    x1, _, x3, x4, _ = z
    one, zero = torch.ones_like(x1), torch.zeros_like(x1)
    return torch.stack(
        [torch.stack([one, zero, zero, zero, zero]), torch.stack([zero, one, x1, x3, x4])]
    )


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
        bracket_levels(heisenberg, x[0, :3], 5)


def test_level_four_of_the_filiform_chain_is_known_by_hand():
    z = torch.tensor([0.4, -0.3, 0.9, 1.5, -0.7], dtype=D64)
    levels = bracket_levels(filiform, z, 4)
    assert [t.shape[0] for t in levels] == [2, 1, 2, 4]
    e = torch.eye(5, dtype=D64)
    assert torch.allclose(levels[2], torch.stack([0 * e[0], -e[3]]), atol=1e-15)
    # rows d·2 + r = [X_d, L3_r]: only [X2, [X2, [X1, X2]]] = ∂5 survives
    assert torch.allclose(levels[3], torch.stack([0 * e[0], 0 * e[0], 0 * e[0], e[4]]))
    ranks = [rank(torch.cat(levels[: k + 1])) for k in range(4)]
    assert ranks == [2, 3, 4, 5]
    assert bracket_levels(filiform, z, 3)[2].equal(levels[2])  # level 3 unchanged by level 4


def _level_four_by_differences(fn, z: torch.Tensor, h: float) -> torch.Tensor:
    """[X_d, L3_r] = DL3_r·X_d − DX_d·L3_r by central differences of level 3 and the fields."""
    fields, _, l3 = bracket_levels(fn, z, 3)

    def level3(w):
        return bracket_levels(fn, w, 3)[2]

    d_l3 = [(level3(z + h * f) - level3(z - h * f)) / (2 * h) for f in fields]
    d_x = torch.stack([(fn(z + h * v) - fn(z - h * v)) / (2 * h) for v in l3])  # (R, m, n)
    return torch.stack([d_l3[d] - d_x[:, d] for d in range(len(fields))]).reshape(-1, z.numel())


@torch.no_grad()  # torch.func differentiates in z; no graph of the weights
def test_level_four_matches_finite_differences_of_level_three():
    z = torch.tensor([0.2, -0.4, 0.3], dtype=D64)
    l4 = bracket_levels(twisted, z, 4)[3]
    errors = []
    for h in (1e-3, 1e-4):  # O(h²): the error falls 100-fold
        expected = _level_four_by_differences(twisted, z, h)
        errors.append(float((l4 - expected).norm() / expected.norm()))
    assert float(l4.norm()) > 1 and errors[1] < 1e-7 and errors[1] < 0.05 * errors[0]
    model = tiny_mlp(n_in=4, n_classes=3, hidden=5, activation="tanh").double().eval()
    fn = model_fields(model, (4,), count=2)
    w = torch.rand(4, generator=torch.Generator().manual_seed(3), dtype=D64)
    l4 = bracket_levels(fn, w, 4)[3]
    expected = _level_four_by_differences(fn, w, 1e-4)
    assert float((l4 - expected).norm() / expected.norm()) < 1e-6
    level3 = lambda v: bracket_levels(fn, v, 3)[2]  # noqa: E731
    assert torch.allclose(next_level(fn, level3, w, chunk_size=1), l4, atol=1e-18)


def test_level_four_obeys_jacobi_and_reaches_the_free_lie_bound():
    # two fields: free Lie algebra dims 2, 1, 2, 3 per degree; the 4 right-normed rows of
    # degree 4 satisfy [X1, [X2, [X1, X2]]] = [X2, [X1, [X1, X2]]] (Jacobi)
    model = tiny_mlp(n_in=10, n_classes=3, hidden=12, activation="tanh").double()
    x = torch.rand(2, 10, generator=torch.Generator().manual_seed(1), dtype=D64)
    fn = model_fields(model.eval(), (10,), count=2)
    l4 = bracket_levels(fn, x[0], 4)[3].detach()
    assert torch.allclose(l4[1], l4[2], atol=1e-10 * float(l4.norm()))
    assert not torch.allclose(l4[0], l4[1], atol=1e-6 * float(l4.norm()))
    res = bracket_span(model, x, levels=4, count=2)
    assert res.rows == [2, 3, 5, 9]
    assert res.rank == [[2, 2], [3, 3], [5, 5], [8, 8]]
    assert len(res.meta["seconds_per_point"]) == 2
    relu = bracket_span(
        tiny_mlp(n_in=8, n_classes=4, hidden=10, activation="relu"), x[:, :8], levels=4
    )
    assert relu.rows == [3, 6, 15, 42] and relu.rank[3] == relu.rank[0]


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
    # stale brackets (recomputed every 4 loops) still reach it: ∂z is constant here
    stale = BracketPathConfig(box=None, threshold=1e-3, max_steps=100, refresh=4)
    x2, rec2 = bracket_path(heisenberg, start, far, stale)
    assert rec2.stop_reason == "reached" and rec2.moves.count("loop") >= 2


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
    with pytest.raises(InputError, match="refresh"):
        BracketPathConfig(refresh=0).check()
    stale = bracket_paths(
        model, start, end, BracketPathConfig(max_steps=30, threshold=0.0, refresh=3)
    )
    assert all(r < 1 for r in stale.relative_distance)
    assert stale.to_json()["config"]["refresh"] == 3
