"""The classifier's logits over a batch of any size: what the applications need of a model
beyond its geometry (the predicted class of a denoised or generated image).

Only the model's output is used, so any classifier works: a leafscope model, a user factory, a
TorchScript module, one whose last layer is not ``nn.Linear``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.information import eval_mode, logits_of
from leafscope.models.inspect import model_device

__all__ = ["predict_logits"]


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """Logits ``(N, C)`` float32 on the CPU of the points ``x`` ``(N, *shape)``.

    The model runs in eval mode (each module's mode is restored after), without gradients, on
    its own device, ``batch_size`` points at a time; floating inputs are cast to the model's
    floating dtype.

    Raises:
        InputError: empty ``x``, a bad ``batch_size``, or an output that is not logits (N, C).
    """
    if not torch.is_tensor(x) or x.dim() == 0 or x.shape[0] == 0:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise InputError(f"x must be a (N, ...) tensor with N >= 1 (got {got})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
    device = model_device(model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    parts = []
    with eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            cast = dtype if dtype is not None and xb.is_floating_point() else None
            parts.append(logits_of(model, xb.to(device=device, dtype=cast)).float().cpu())
    return torch.cat(parts)
