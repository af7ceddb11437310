"""Uniform access to training data: tensors, an image set, a torch Dataset, or a whole graph."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data.dataloader import default_collate

from leafscope.errors import InputError


class BatchSource:
    """Labelled samples fetched by index: ``source.batch(idx) -> (x, y)``.

    Args:
        data: ``(inputs, labels)`` tensors, an object with ``.images`` and ``.labels`` tensors,
            or a map-style ``Dataset`` yielding ``(input, label)`` pairs.
        what: name used in error messages (``"train"``, ``"val"``).
    """

    def __init__(self, data: Any, what: str) -> None:
        self.dataset: Dataset | None = None
        if isinstance(data, (tuple, list)):
            if len(data) != 2:
                raise InputError(f"{what} must be (inputs, labels), got {len(data)} items")
            x, y = data
        elif hasattr(data, "images") and hasattr(data, "labels"):
            x, y = data.images, data.labels
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            self.dataset = data
            self.size = len(data)  # type: ignore[arg-type]
            if self.size == 0:
                raise InputError(f"{what} dataset is empty: pass at least one sample")
            return
        else:
            raise InputError(
                f"{what} must be (inputs, labels) tensors or a torch Dataset "
                f"(got {type(data).__name__})"
            )
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise InputError(f"{what} inputs and labels must be torch tensors")
        if not x.is_floating_point():
            raise InputError(f"{what} inputs must be floating point (got {x.dtype}): use .float()")
        if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise InputError(
                f"{what} labels must be a 1-D integer tensor (got {y.dtype} shape "
                f"{tuple(y.shape)}): pass class indices"
            )
        if len(x) != len(y) or len(x) == 0:
            raise InputError(
                f"{what} has {len(x)} inputs and {len(y)} labels: they must match and be non-empty"
            )
        if int(y.min()) < 0:
            raise InputError(
                f"{what} labels include {int(y.min())}: training needs class indices >= 0 "
                "(drop unlabelled points, marked -1)"
            )
        self.x, self.y = x, y.long()
        self.size = len(x)

    def __len__(self) -> int:
        return self.size

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs and int64 labels of the samples ``idx`` (1-D index tensor)."""
        if self.dataset is None:
            return self.x[idx], self.y[idx]
        x, y = default_collate([self.dataset[int(i)] for i in idx])
        return x, torch.as_tensor(y).long()


class GraphBatch:
    """A whole graph with the nodes a loss or metric looks at: one full-batch step.

    Args:
        data: a PyTorch Geometric ``Data`` (``x``, ``edge_index``; ``y`` for node labels).
        mask: boolean ``(num_nodes,)`` mask of the scored nodes, or None (e.g. link prediction,
            whose loss reads the edges it needs from ``data``).
    """

    def __init__(self, data: Any, mask: Tensor | None) -> None:
        if mask is not None and (
            not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.ndim != 1
        ):
            raise InputError("a graph mask must be a 1-D boolean tensor over the nodes")
        if mask is not None and not bool(mask.any()):
            raise InputError("the graph mask selects no node: give a mask with at least one True")
        self.data, self.mask = data, mask

    def to(self, device: torch.device) -> GraphBatch:
        """The same graph and mask on ``device`` (no copy when already there)."""
        mask = None if self.mask is None else self.mask.to(device)
        return GraphBatch(self.data.to(device), mask)

    def labels(self) -> Tensor:
        """int64 labels of the masked nodes."""
        if getattr(self.data, "y", None) is None:
            raise InputError("the graph has no node labels data.y: give y or a custom loss_fn")
        y = self.data.y.long()
        return y if self.mask is None else y[self.mask]


def is_graph(data: Any) -> bool:
    """Whether ``data`` is a graph: a PyG ``Data`` (``x`` and ``edge_index``) or a GraphBatch."""
    return isinstance(data, GraphBatch) or (
        isinstance(getattr(data, "edge_index", None), Tensor)
        and isinstance(getattr(data, "x", None), Tensor)
    )


class GraphSource:
    """One "sample", the whole graph: ``batch(idx)`` always returns the :class:`GraphBatch`.

    Args:
        data: a PyG ``Data`` or a :class:`GraphBatch` (used as given).
        mask_name: attribute of ``data`` holding the node mask (``"train_mask"``, ``"val_mask"``).
        required: raise when the mask is missing (otherwise all nodes / no mask).
    """

    dataset = None

    def __init__(self, data: Any, mask_name: str, *, required: bool = True) -> None:
        if isinstance(data, GraphBatch):
            self.graph = data
        else:
            mask = getattr(data, mask_name, None)
            if mask is None and required:
                raise InputError(
                    f"the graph has no {mask_name}: add the boolean node mask or pass "
                    f"GraphBatch(data, mask)"
                )
            self.graph = GraphBatch(data, mask)

    def __len__(self) -> int:
        return 1

    def batch(self, idx: Tensor) -> GraphBatch:
        """The whole graph (``idx`` is ignored: one full-batch step)."""
        return self.graph


def make_source(data: Any, what: str, *, graph_mask: str, mask_required: bool = True) -> Any:
    """A :class:`BatchSource` or, for graphs, a :class:`GraphSource` reading ``graph_mask``."""
    if isinstance(data, (BatchSource, GraphSource)):
        return data
    if is_graph(data):
        return GraphSource(data, graph_mask, required=mask_required)
    return BatchSource(data, what)
