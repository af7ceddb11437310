"""The averaged information matrix (data-set Fisher): identities against dense routes."""

import pytest
import torch

from leafscope import FisherInformation, InputError
from leafscope.information import DataInformation, MeanInformation
from leafscope.testing import tiny_mlp


@pytest.fixture
def fisher():
    torch.manual_seed(2)
    model = tiny_mlp(n_in=6, n_classes=3, hidden=5).double()
    x = torch.randn(7, 6, dtype=torch.float64)
    return model, x, FisherInformation(model, x)


def test_mean_equals_average_of_dense_matrices(fisher):
    _, _, F = fisher
    Fbar = F.mean()
    assert isinstance(Fbar, MeanInformation)
    torch.testing.assert_close(Fbar.dense(), F.dense().mean(0))
    torch.testing.assert_close(Fbar.trace(), F.trace().mean())


def test_spectrum_products_and_solve_agree_with_dense(fisher):
    _, _, F = fisher
    Fbar = F.mean()
    dense = Fbar.dense()
    eig = torch.linalg.eigvalsh(dense).flip(0)[: Fbar.max_rank]
    torch.testing.assert_close(Fbar.eigenvalues(), eig, atol=1e-12, rtol=1e-9)
    assert Fbar.max_rank == min(7 * 2, F.dim)
    vals, vecs = Fbar.eigh()
    torch.testing.assert_close(dense @ vecs.T, vecs.T * vals, atol=1e-12, rtol=0)
    v = torch.randn(F.dim, dtype=torch.float64)
    torch.testing.assert_close(Fbar.mv(v), dense @ v)
    torch.testing.assert_close(Fbar.quadratic(v), v @ dense @ v)
    sol = Fbar.solve(v, damping=0.1)
    torch.testing.assert_close((dense + 0.1 * torch.eye(F.dim, dtype=torch.float64)) @ sol, v)


def test_mean_kl_is_half_the_quadratic_form(fisher):
    model, x, F = fisher
    delta = torch.randn(F.dim, dtype=torch.float64)
    eps = 1e-4
    moved = tiny_mlp(n_in=6, n_classes=3, hidden=5).double()
    moved.load_state_dict(model.state_dict())
    torch.nn.utils.vector_to_parameters(
        torch.nn.utils.parameters_to_vector(moved.parameters()) + eps * delta, moved.parameters()
    )
    p0, p1 = torch.softmax(model(x), 1), torch.softmax(moved(x), 1)
    mean_kl = (p0 * (p0.log() - p1.log())).sum(1).mean()
    torch.testing.assert_close(mean_kl, 0.5 * eps**2 * F.mean().quadratic(delta), rtol=1e-2, atol=0)


def test_data_information_mean_and_errors(fisher):
    model, x, _ = fisher
    G = DataInformation(model, x)
    torch.testing.assert_close(G.mean().dense(), G.dense().mean(0))
    with pytest.raises(InputError, match="entries"):
        G.mean().mv(torch.ones(5, dtype=torch.float64))
    with pytest.raises(InputError, match="damping"):
        G.mean().solve(torch.ones(6, dtype=torch.float64), 0.0)
