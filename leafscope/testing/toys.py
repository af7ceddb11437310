"""Small models whose information matrices are known in closed form or cheap to brute-force."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class LinearSoftmax(nn.Module):
    """Logits ``s = W x + b`` on flattened inputs: ``J = W`` everywhere, so
    ``G(x) = Wᵀ (diag p − p pᵀ) W`` in closed form (see :func:`closed_form_dim`)."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone() if bias is not None else torch.zeros(weight.shape[0]))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


def closed_form_dim(model: LinearSoftmax, x: Tensor) -> Tensor:
    """Dense ``G`` (N, n, n) of a :class:`LinearSoftmax` model at points ``x`` (N, ...)."""
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
        m = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        w = model.weight
        return w.T @ m @ w


def tiny_mlp(
    n_in: int = 12, n_classes: int = 4, hidden: int = 16, activation: str = "tanh", seed: int = 0
) -> nn.Module:
    """A two-hidden-layer MLP on flattened inputs, deterministic in ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    act = _ACTIVATIONS[activation]
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, hidden),
        act(),
        nn.Linear(hidden, hidden),
        act(),
        nn.Linear(hidden, n_classes),
    )
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.6)
    return model


def tiny_cnn(n_classes: int = 3, activation: str = "relu", seed: int = 0) -> nn.Module:
    """A small CNN on (N, 1, 8, 8) images, deterministic in ``seed``."""
    torch.manual_seed(seed)
    act = _ACTIVATIONS[activation]
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        act(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 8),
        act(),
        nn.Linear(8, n_classes),
    )


def shared_data_dir() -> Path | None:
    """The project's shared data folder (``../shared/data`` next to the repository), if present."""
    repo = Path(__file__).resolve().parents[2]
    for candidate in (repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if (candidate / "mnist").is_dir():
            return candidate
    return None
