"""Mathematics of G and F against independent slow routes and closed forms."""

import pytest
import torch
from torch.autograd.functional import jacobian

from leafscope import DataInformation, FisherInformation, InputError
from leafscope.testing import LinearSoftmax, closed_form_dim, tiny_cnn, tiny_mlp


@pytest.fixture(autouse=True)
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def dense_dim_slow(model, x):
    """Independent route: Σ_i p_i ∇log p_i ∇log p_iᵀ with one autograd call per point."""
    out = []
    for xi in x:
        xi = xi.unsqueeze(0)
        logp = torch.log_softmax(model(xi), 1)[0]
        grads = jacobian(lambda z: torch.log_softmax(model(z), 1)[0], xi).reshape(len(logp), -1)
        out.append((logp.exp()[:, None, None] * grads[:, :, None] * grads[:, None, :]).sum(0))
    return torch.stack(out)


@pytest.fixture
def mlp_points():
    torch.manual_seed(1)
    return tiny_mlp(n_in=12, n_classes=4).double(), torch.randn(5, 3, 4)


def test_linear_model_matches_closed_form():
    torch.manual_seed(0)
    model = LinearSoftmax(torch.randn(5, 7), torch.randn(5))
    x = torch.randn(6, 7)
    G = DataInformation(model, x)
    torch.testing.assert_close(G.dense(), closed_form_dim(model, x), rtol=1e-10, atol=1e-12)


def test_factor_equals_expectation_of_score_outer_products(mlp_points):
    model, x = mlp_points
    G = DataInformation(model, x)
    torch.testing.assert_close(G.dense(), dense_dim_slow(model, x), rtol=1e-9, atol=1e-12)


def test_jt_m_j_identity(mlp_points):
    model, x = mlp_points
    G = DataInformation(model, x)
    for k, xi in enumerate(x):
        J = jacobian(lambda z: model(z.unsqueeze(0))[0], xi).reshape(4, -1)
        p = torch.softmax(model(xi.unsqueeze(0))[0], 0)
        M = torch.diag(p) - torch.outer(p, p)
        torch.testing.assert_close(G.dense()[k], J.T @ M @ J, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["data", "fisher"])
def test_symmetric_psd_and_rank_below_classes(kind, mlp_points):
    model, x = mlp_points
    M = DataInformation(model, x) if kind == "data" else FisherInformation(model, x)
    D = M.dense()
    torch.testing.assert_close(D, D.transpose(1, 2))
    ev = torch.linalg.eigvalsh(D)
    assert ev.min() > -1e-12 * ev.max()
    assert (M.rank().rank <= 3).all()
    assert (torch.linalg.matrix_rank(D, hermitian=True) <= 3).all()


def test_eigenvalues_equal_dense_route(mlp_points):
    model, x = mlp_points
    G = DataInformation(model, x)
    dense_ev = torch.linalg.eigvalsh(dense_dim_slow(model, x)).flip(1)[:, :3]
    torch.testing.assert_close(G.eigenvalues(), dense_ev, rtol=1e-6, atol=0)
    # Eigenvectors: G v = λ v for the unit rows of eigh().
    vals, vecs = G.eigh()
    for i in range(3):
        torch.testing.assert_close(G.mv(vecs[:, i]), vals[:, i : i + 1] * vecs[:, i])


def test_trace_is_expected_squared_score(mlp_points):
    model, x = mlp_points
    G = DataInformation(model, x)
    torch.testing.assert_close(G.trace(), torch.diagonal(G.dense(), dim1=1, dim2=2).sum(1))
    torch.testing.assert_close(G.trace(), G.eigenvalues().sum(1))


def kl(p, q):
    return (p * (p.log() - q.log())).sum(-1)


@pytest.mark.parametrize("eps", [1e-4, 1e-5])
def test_kl_second_order_input_space(eps, mlp_points):
    model, x = mlp_points
    G = DataInformation(model, x)
    v = torch.randn(x.shape)
    p0 = torch.softmax(model(x), 1)
    p1 = torch.softmax(model(x + eps * v), 1)
    predicted = 0.5 * eps**2 * G.quadratic(v)
    torch.testing.assert_close(kl(p1, p0), predicted, rtol=1e-2, atol=0)


def test_kl_second_order_parameter_space(mlp_points):
    model, x = mlp_points
    F = FisherInformation(model, x)
    delta = torch.randn(F.dim)
    eps = 1e-4
    moved = tiny_mlp(n_in=12, n_classes=4).double()
    moved.load_state_dict(model.state_dict())
    offset = 0
    with torch.no_grad():
        for param in moved.parameters():
            n = param.numel()
            param.add_(eps * delta[offset : offset + n].reshape(param.shape))
            offset += n
    p0, p1 = torch.softmax(model(x), 1), torch.softmax(moved(x), 1)
    torch.testing.assert_close(kl(p0, p1), 0.5 * eps**2 * F.quadratic(delta), rtol=1e-2, atol=0)


def test_batched_equals_one_by_one():
    model = tiny_cnn(n_classes=3).double()
    x = torch.rand(6, 1, 8, 8)
    G = DataInformation(model, x, chunk_size=4)
    for k in range(6):
        Gk = DataInformation(model, x[k : k + 1])
        torch.testing.assert_close(G.eigenvalues()[k], Gk.eigenvalues()[0])
        torch.testing.assert_close(G.factor[k], Gk.factor[0])


def test_projections_split_space(mlp_points):
    model, x = mlp_points
    G = DataInformation(model, x)
    v = torch.randn(5, 12)
    leaf, kernel = G.project_leaf(v), G.project_kernel(v)
    torch.testing.assert_close(leaf + kernel, v)
    torch.testing.assert_close(G.mv(kernel), torch.zeros_like(v), atol=1e-12, rtol=0)
    torch.testing.assert_close(G.project_leaf(leaf), leaf)  # idempotent
    assert ((leaf * kernel).sum(1).abs() < 1e-10).all()  # orthogonal


def test_solve_inverts_damped_matrix(mlp_points):
    model, x = mlp_points
    G = DataInformation(model, x)
    v = torch.randn(5, 12)
    sol = G.solve(v, damping=1e-2)
    torch.testing.assert_close(G.mv(sol) + 1e-2 * sol, v)


def test_float32_close_to_float64():
    model = tiny_cnn(n_classes=3).float()
    x = torch.rand(4, 1, 8, 8, dtype=torch.float32)
    g32 = DataInformation(model, x).eigenvalues()
    g64 = DataInformation(model, x, dtype=torch.float64).eigenvalues()
    assert g32.dtype == torch.float32
    torch.testing.assert_close(g32.double(), g64, rtol=1e-3, atol=1e-9)


def test_model_mode_restored_and_not_cast():
    model = tiny_cnn().float().train()
    DataInformation(model, torch.rand(2, 1, 8, 8, dtype=torch.float32), dtype=torch.float64)
    assert model.training
    assert next(model.parameters()).dtype == torch.float32


class TwoOutputs(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :2], x


@pytest.mark.parametrize(
    "model, x, message",
    [
        (torch.nn.Flatten(0), torch.rand(3, 4), "logits of shape"),
        (torch.nn.Linear(4, 1), torch.rand(3, 4), "C >= 2"),
        (TwoOutputs(), torch.rand(3, 4), "must return a tensor"),
        (torch.nn.Linear(4, 3), torch.tensor([[0.0, float("nan"), 0, 0]]), "NaN or inf"),
        (torch.nn.Linear(4, 3), torch.rand(4), "batch of shape"),
        (torch.nn.Linear(4, 3), torch.ones(2, 4, dtype=torch.long), "floating point"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, x, message):
    with pytest.raises(InputError, match=message):
        DataInformation(model.double(), x.double() if x.is_floating_point() else x)


def test_batchnorm_in_training_mode_refused_when_not_forced():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 3)
    )
    model.train()
    with pytest.raises(InputError, match="BatchNorm layer '1' is in training mode"):
        DataInformation(model, torch.rand(3, 4), force_eval=False)
    assert DataInformation(model, torch.rand(3, 4)).eigenvalues().shape == (3, 2)


def test_dense_refuses_huge():
    G = DataInformation(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 224 * 224, 2)),
        torch.rand(1, 3, 224, 224, dtype=torch.float64),
    )
    with pytest.raises(InputError, match="GiB"):
        G.dense()
    assert G.eigenvalues().shape == (1, 1)
