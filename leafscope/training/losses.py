"""Loss functions for :func:`leafscope.training.fit`: ``loss_fn(model, batch) -> LossOutput``.

A batch is ``(inputs, labels)`` for tensor / image / Dataset data and a
:class:`~leafscope.training.data.GraphBatch` for graphs (one full-batch step per epoch). A loss
function returns the mean loss over the batch (a scalar tensor with a graph) plus the logits and
targets it was computed from, which :func:`fit` uses for the accuracy and to weight the running
mean; returning a bare scalar tensor is allowed too (then no accuracy, each batch weighs 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.training.data import GraphBatch

__all__ = [
    "LossFn",
    "LossOutput",
    "as_loss_output",
    "cross_entropy_loss",
    "link_prediction_loss",
    "sample_negative_edges",
]


class LossOutput(NamedTuple):
    """Mean loss of a batch and what it was computed from.

    Fields (a named tuple): ``loss``, the scalar tensor (nats), differentiable; ``logits``,
    ``(n, C)`` class logits or ``(n,)`` binary logits, or None; ``targets``, ``(n,)`` class
    indices (or 0/1 for binary logits), or None.
    """

    loss: Tensor
    logits: Tensor | None = None
    targets: Tensor | None = None


LossFn = Callable[[nn.Module, Any], "LossOutput | Tensor"]


def as_loss_output(out: LossOutput | Tensor | tuple) -> LossOutput:
    """Normalise a loss function's return value (a bare tensor or a 3-tuple) to LossOutput."""
    if isinstance(out, Tensor):
        return LossOutput(out)
    if isinstance(out, tuple) and len(out) == 3:
        return LossOutput(*out)
    raise InputError(
        f"loss_fn must return a scalar tensor or (loss, logits, targets); got {type(out).__name__}"
    )


def cross_entropy_loss(model: nn.Module, batch: Any) -> LossOutput:
    """Mean cross-entropy of ``model`` on ``(x, y)`` or on the masked nodes of a GraphBatch."""
    if isinstance(batch, GraphBatch):
        out = model(batch.data.x, batch.data.edge_index)
        logits = out if batch.mask is None else out[batch.mask]
        y = batch.labels()
    else:
        x, y = batch
        logits = model(x)
    return LossOutput(F.cross_entropy(logits, y), logits, y)


def sample_negative_edges(
    edge_index: Tensor, num_nodes: int, count: int, generator: torch.Generator | None = None
) -> Tensor:
    """``(2, count)`` node pairs drawn uniformly among ordered non-edges without self-loops.

    Rejection sampling with torch's RNG (``generator``, or the global one, which :func:`fit`
    seeds and checkpoints). Pairs are independent draws, so a pair can repeat.

    Args:
        edge_index: ``(2, E)`` existing edges (excluded).
        num_nodes: number of nodes ``n``.
        count: pairs to draw.
        generator: CPU generator; None uses the global RNG.
    """
    n = int(num_nodes)
    existing = torch.unique(edge_index[0].cpu() * n + edge_index[1].cpu())
    free = n * (n - 1) - int((existing // n != existing % n).sum())
    if count > 0 and free <= 0:
        raise InputError(f"the graph on {n} nodes is complete: no negative edge to sample")
    found: list[Tensor] = []
    have = 0
    for _ in range(100):
        if have >= count:
            break
        cand = torch.randint(0, n * n, (int(1.2 * (count - have)) + 16,), generator=generator)
        cand = cand[(cand // n != cand % n) & ~torch.isin(cand, existing)]
        found.append(cand)
        have += len(cand)
    if have < count:
        raise InputError(f"could not sample {count} negative edges: the graph is too dense")
    pairs = torch.cat(found)[:count] if found else torch.zeros(0, dtype=torch.long)
    return torch.stack([pairs // n, pairs % n]).to(edge_index.device)


def link_prediction_loss(model: nn.Module, batch: GraphBatch) -> LossOutput:
    """Binary cross-entropy of link logits: positive edges against as many sampled non-edges.

    The model embeds ``model(x, edge_index) -> z`` and scores pairs ``model.decode(z, pairs)``.
    Positives are ``data.edge_label_index`` (those with ``edge_label == 1`` when labels are
    given; e.g. the train split of ``RandomLinkSplit``), else ``data.edge_index``; negatives are
    resampled every call by :func:`sample_negative_edges` (excluding ``edge_index``).
    """
    if not isinstance(batch, GraphBatch):
        raise InputError("link_prediction_loss needs graph data (a PyG Data), not tensors")
    data = batch.data
    pos = getattr(data, "edge_label_index", None)
    if pos is None:
        pos = data.edge_index
    elif getattr(data, "edge_label", None) is not None:
        pos = pos[:, data.edge_label == 1]
    z = model(data.x, data.edge_index)
    neg = sample_negative_edges(data.edge_index, data.num_nodes, pos.shape[1]).to(pos.device)
    logits = model.decode(z, torch.cat([pos, neg], dim=1))
    labels = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])]).to(logits)
    return LossOutput(F.binary_cross_entropy_with_logits(logits, labels), logits, labels)
