"""Features of any layer of a model, collected with forward hooks."""

from __future__ import annotations

import torch
from torch import nn

from leafscope.errors import InputError

__all__ = ["extract_features", "layer_names"]


def layer_names(model: nn.Module) -> list[str]:
    """Names of the sub-modules of ``model`` that :func:`extract_features` accepts."""
    return [name for name, _ in model.named_modules() if name]


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    layers: list[str],
    *,
    per_channel: bool = False,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for every input, in eval mode (the mode is restored after).

    Args:
        model: any ``nn.Module``.
        images: (N, ...) inputs.
        layers: names from :func:`layer_names` (``model.named_modules()``).
        per_channel: keep the channel axis: a (N, C, ...) output becomes (N, C, prod(...))
            (then ``feats[:, c]`` are the features of channel c); otherwise (N, prod(rest)).
        batch_size: inputs per forward pass.
        device: where the forward passes run; the features are returned on the CPU, float32.

    Returns:
        ``{layer: features}``.
    """
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules or not name]
    if missing or not layers:
        raise InputError(
            f"unknown layer(s) {missing or layers}: use names from "
            f"leafscope.nnk.features.layer_names(model), e.g. {layer_names(model)[:8]}"
        )
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    store: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def hook_for(name: str):
        def hook(_module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            if not torch.is_tensor(out):
                raise InputError(f"layer {name!r} does not output a tensor: pick another layer")
            out = out.detach().float().cpu()
            if per_channel and out.ndim >= 2:
                store[name].append(out.reshape(out.shape[0], out.shape[1], -1))
            else:
                store[name].append(out.reshape(out.shape[0], -1))

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    was_training = model.training
    model.eval()
    try:
        dev = torch.device(device)
        for start in range(0, images.shape[0], batch_size):
            model(images[start : start + batch_size].to(dev))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: torch.cat(chunks) for name, chunks in store.items()}
