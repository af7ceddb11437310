"""Toy data shared by the application tests: two well-separated 'image' classes on 8×8 pixels."""

import pytest
import torch

from leafscope.testing import tiny_cnn


def blobs(n: int, seed: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, 8, 8) in [0, 1]: class 0 bright top half, class 1 bright bottom half."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=gen)
    for i in range(n):
        rows = slice(0, 4) if y[i] == 0 else slice(4, 8)
        x[i, 0, rows] += 0.7 + 0.1 * torch.rand(4, 8, generator=gen)
    return (x + shift).clamp(0, 1), y


@pytest.fixture(scope="session")
def toy():
    """A tiny CNN trained for a few steps on the blobs, its training and test data."""
    torch.manual_seed(0)
    model = tiny_cnn(n_classes=2, seed=0)
    x, y = blobs(200, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    xt, yt = blobs(60, 1)
    return model, x, y, xt, yt


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscription on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
