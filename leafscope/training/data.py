"""Uniform access to training data given as tensors, an image set, or a torch Dataset."""

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
