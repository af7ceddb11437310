"""Graph convolutional networks (Kipf & Welling 2017) on PyTorch Geometric.

Input features: in ``conv1.lin.weight`` (shape (hidden, in_channels)) input feature j is
**column j**, so pruning feature j means zeroing ``conv1.lin.weight[:, j]`` (or the input column
``x[:, j]``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from leafscope.errors import InputError, check_positive_int
from leafscope.models.registry import make_activation, register_model


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise InputError(f"dropout must be in [0, 1) (got {dropout!r})")
    return float(dropout)


@register_model("gcn")
class GCN(nn.Module):
    """dropout → conv1(in, hidden) → act → dropout → conv2(hidden, C); node logits (N, C).

    Args:
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        num_classes: number of node classes C.
        in_channels: node feature count F.
        hidden: hidden width (default 16).
        dropout: dropout probability (default 0.5, active in train mode only).
        image_size: ignored (accepted so every model shares :func:`build_model`'s signature).
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        num_classes: int = 7,
        in_channels: int = 1433,
        hidden: int = 16,
        dropout: float = 0.5,
        image_size: Any = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        check_positive_int(in_channels, "in_channels")
        check_positive_int(hidden, "hidden")
        self.config = {
            "name": "gcn",
            "activation": activation,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "hidden": hidden,
            "dropout": _check_dropout(dropout),
        }
        self.drop_in = nn.Dropout(dropout)
        self.conv1 = GCNConv(in_channels, hidden)
        self.act = make_activation(activation)
        self.drop_hidden = nn.Dropout(dropout)
        self.conv2 = GCNConv(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Map node features (N, F) and edges (2, E) to node logits (N, C)."""
        x = self.act(self.conv1(self.drop_in(x), edge_index))
        return self.conv2(self.drop_hidden(x), edge_index)


@register_model("gcn-link")
class GCNLinkPredictor(nn.Module):
    """GCN encoder conv1(in, hidden) → act → dropout → conv2(hidden, embedding_dim), and a
    dot-product decoder: the logit of edge (u, v) is ⟨z_u, z_v⟩.

    Args:
        activation: ``relu``, ``gelu`` or ``sigmoid``.
        in_channels: node feature count F.
        hidden: hidden width (default 128).
        embedding_dim: node embedding size (default 64).
        dropout: dropout probability (default 0).
        num_classes, image_size: ignored (shared :func:`build_model` signature).
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        in_channels: int = 1433,
        hidden: int = 128,
        embedding_dim: int = 64,
        dropout: float = 0.0,
        num_classes: Any = None,
        image_size: Any = None,
    ) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(hidden, "hidden")
        check_positive_int(embedding_dim, "embedding_dim")
        self.config = {
            "name": "gcn-link",
            "activation": activation,
            "in_channels": in_channels,
            "hidden": hidden,
            "embedding_dim": embedding_dim,
            "dropout": _check_dropout(dropout),
        }
        self.conv1 = GCNConv(in_channels, hidden)
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout)
        self.conv2 = GCNConv(hidden, embedding_dim)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Node embeddings z (N, embedding_dim) from features (N, F) and edges (2, E)."""
        return self.conv2(self.drop(self.act(self.conv1(x, edge_index))), edge_index)

    def encode(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Alias of :meth:`forward`."""
        return self.forward(x, edge_index)

    def decode(self, z: Tensor, edge_label_index: Tensor) -> Tensor:
        """Edge logits (E,) = ⟨z[src], z[dst]⟩ for edge_label_index (2, E)."""
        return (z[edge_label_index[0]] * z[edge_label_index[1]]).sum(dim=-1)
