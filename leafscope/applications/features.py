"""Logits and penultimate features of a classifier, in batches, without gradients.

The *head* is the model's last ``nn.Linear`` (the one producing the logits); its input is the
penultimate feature vector. :class:`leafscope.testing.LinearSoftmax` (no ``nn.Linear``) counts
its flattened input as the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from leafscope.errors import InputError

__all__ = ["FeatureOutputs", "extract", "head_of", "model_device"]


@dataclass
class FeatureOutputs:
    """``features`` (N, F) float32 and ``logits`` (N, C) float32, on the CPU."""

    features: Tensor
    logits: Tensor


def model_device(model: nn.Module) -> torch.device:
    ref = next(iter(model.parameters()), None)
    return ref.device if ref is not None else torch.device("cpu")


def head_of(model: nn.Module) -> tuple[nn.Module | None, Tensor, Tensor]:
    """The logit layer: ``(module, weight (C, F), bias (C,))``; module None for LinearSoftmax."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        last = linears[-1]
        bias = last.bias if last.bias is not None else torch.zeros(last.out_features)
        return last, last.weight, bias
    if isinstance(getattr(model, "weight", None), Tensor) and model.weight.dim() == 2:
        return None, model.weight, model.bias
    raise InputError(
        f"{type(model).__name__} has no nn.Linear layer: the applications need a classifier whose "
        "last layer is nn.Linear (its input is the penultimate feature vector)"
    )


@torch.no_grad()
def extract(model: nn.Module, x: Tensor, batch_size: int = 500) -> FeatureOutputs:
    """Penultimate features and logits of ``x`` (N, ...) in eval mode (mode restored after).

    Raises:
        InputError: the last ``nn.Linear`` is not the layer producing the logits.
    """
    if x.shape[0] == 0:
        raise InputError("extract needs at least one input (got an empty batch)")
    head, weight, bias = head_of(model)
    device = model_device(model)
    dtype = weight.dtype
    feats: list[Tensor] = []
    logits: list[Tensor] = []
    captured: list[Tensor] = []
    hook = head.register_forward_hook(lambda m, i, o: captured.append(i[0])) if head else None
    was_training = model.training
    model.eval()
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device=device, dtype=dtype)
            captured.clear()
            out = model(xb)
            f = captured[-1].flatten(1) if head is not None else xb.flatten(1)
            feats.append(f.float().cpu())
            logits.append(out.float().cpu())
    finally:
        model.train(was_training)
        if hook is not None:
            hook.remove()
    result = FeatureOutputs(torch.cat(feats), torch.cat(logits))
    check = result.features[:4].to(dtype) @ weight.detach().cpu().T + bias.detach().cpu()
    if not torch.allclose(check.float(), result.logits[:4], rtol=1e-3, atol=1e-3):
        raise InputError(
            f"the last nn.Linear of {type(model).__name__} does not produce its logits (a layer "
            "follows it): features for transfer and OOD need a model ending in nn.Linear"
        )
    return result
