"""Reach into a model: outputs of named layers, and the penultimate features of a classifier.

Everything here runs the model in batches, without gradients, in eval mode (each module's mode
is restored after), on the model's device unless told otherwise, and returns float32 tensors
on the CPU. Layers are named as in ``model.named_modules()`` (see
:func:`leafscope.models.inspect.module_names`).

The *head* of a classifier is its last ``nn.Linear`` (the one producing the logits); its input
is the penultimate feature vector. :class:`leafscope.testing.LinearSoftmax` (no ``nn.Linear``)
counts its flattened input as the features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.models.inspect import model_device, resolve_modules

__all__ = ["SHAPES", "FeatureOutputs", "head_of", "layer_features", "penultimate_features"]

Shape = Literal["flat", "channels", "raw"]
SHAPES: tuple[str, ...] = ("flat", "channels", "raw")


@dataclass
class FeatureOutputs:
    """``features`` (N, F) float32 and ``logits`` (N, C) float32, on the CPU."""

    features: Tensor
    logits: Tensor


def layer_features(
    model: nn.Module,
    x: Tensor,
    layers: str | Sequence[str],
    *,
    shape: Shape = "flat",
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, Tensor]:
    """Outputs of the named layers for every input, collected with forward hooks.

    Args:
        model: any ``nn.Module`` mapping a batch ``x[i:j]`` to anything.
        x: (N, ...) inputs; floating inputs are cast to the model's floating dtype.
        layers: one name or several, from ``model.named_modules()``.
        shape: ``"flat"``: (N, D), the output flattened per sample; ``"channels"``: a (N, C, ...)
            output becomes (N, C, prod(...)) (``feats[:, c]`` are the features of channel c; a
            (N, D) output becomes (N, D, 1)); ``"raw"``: the output's own shape (N, ...).
        batch_size: inputs per forward pass.
        device: where the forward passes run; the model must already live there. Default: the
            model's device (:func:`leafscope.models.inspect.model_device`).

    Returns:
        ``{layer: features}``, float32 on the CPU, in the order of ``layers``.

    Raises:
        InputError: unknown layer (the message lists the valid names), a layer whose output is
            not a (N, ...) tensor, an unknown ``shape``, empty ``x`` or a wrong device.
    """
    if shape not in SHAPES:
        raise InputError(f"unknown shape {shape!r}: use one of {SHAPES}")
    modules = resolve_modules(model, layers)
    taps = {name: (module, False) for name, module in modules.items()}
    return _collect(model, x, taps, shape=shape, batch_size=batch_size, device=device)


def head_of(model: nn.Module) -> tuple[nn.Module | None, Tensor, Tensor]:
    """The logit layer: ``(module, weight (C, F), bias (C,))``; module None for LinearSoftmax.

    Raises:
        InputError: the model has neither an ``nn.Linear`` nor a 2-D ``weight`` of its own.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        last = linears[-1]
        bias = last.bias if last.bias is not None else torch.zeros(last.out_features)
        return last, last.weight, bias
    if isinstance(getattr(model, "weight", None), Tensor) and model.weight.dim() == 2:
        return None, model.weight, model.bias
    raise InputError(
        f"{type(model).__name__} has no nn.Linear layer: penultimate features need a classifier "
        "whose last layer is nn.Linear (its input is the penultimate feature vector)"
    )


def penultimate_features(
    model: nn.Module,
    x: Tensor,
    *,
    batch_size: int = 500,
    device: str | torch.device | None = None,
) -> FeatureOutputs:
    """Penultimate features (the input of :func:`head_of`) and logits of ``x`` (N, ...).

    Args:
        model: a classifier ending in ``nn.Linear`` (or a :class:`LinearSoftmax`).
        x: (N, ...) inputs.
        batch_size: inputs per forward pass.
        device: as in :func:`layer_features`.

    Returns:
        :class:`FeatureOutputs`: features (N, F) and logits (N, C), float32 on the CPU.

    Raises:
        InputError: no head, or the last ``nn.Linear`` is not the layer producing the logits.
    """
    head, weight, bias = head_of(model)
    taps = {"features": (model if head is None else head, True), "logits": (model, False)}
    out = _collect(model, x, taps, shape="flat", batch_size=batch_size, device=device)
    result = FeatureOutputs(out["features"], out["logits"])
    dtype = weight.dtype
    check = result.features[:4].to(dtype) @ weight.detach().cpu().T + bias.detach().cpu()
    if check.shape != result.logits[:4].shape or not torch.allclose(
        check.float(), result.logits[:4], rtol=1e-3, atol=1e-3
    ):
        raise InputError(
            f"the last nn.Linear of {type(model).__name__} does not produce its logits (a layer "
            "follows it): penultimate features need a model ending in nn.Linear"
        )
    return result


@torch.no_grad()
def _collect(
    model: nn.Module,
    x: Tensor,
    taps: dict[str, tuple[nn.Module, bool]],
    *,
    shape: Shape,
    batch_size: int,
    device: str | torch.device | None,
) -> dict[str, Tensor]:
    """Run ``model`` over ``x`` in batches; ``taps[key] = (module, take_input)`` is recorded."""
    if not torch.is_tensor(x) or x.dim() == 0 or x.shape[0] == 0:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise InputError(f"x must be a (N, ...) tensor with N >= 1 (got {got})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
    dev = _check_device(model, device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    store: dict[str, list[Tensor]] = {key: [] for key in taps}
    n_batch = 0

    def hook_for(key: str, take_input: bool):
        def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
            value = inputs[0] if take_input and inputs else output
            store[key].append(_shaped(value, key, n_batch, shape))

        return hook

    handles = [m.register_forward_hook(hook_for(k, inp)) for k, (m, inp) in taps.items()]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            n_batch = xb.shape[0]
            cast = dtype if dtype is not None and xb.is_floating_point() else None
            model(xb.to(device=dev, dtype=cast))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            module.training = mode
    n_passes = -(-x.shape[0] // batch_size)
    odd = {k: len(chunks) / n_passes for k, chunks in store.items() if len(chunks) != n_passes}
    if odd:
        times = ", ".join(f"{k!r} {n:g} times" for k, n in odd.items())
        raise InputError(
            f"in each forward pass of {type(model).__name__} layer {times}, not once (unused, "
            "or a module called several times): pick layers that run exactly once"
        )
    return {key: torch.cat(chunks) for key, chunks in store.items()}


def _shaped(value: object, key: str, n: int, shape: Shape) -> Tensor:
    """A hooked value as a float32 CPU tensor of the requested ``shape``."""
    if not torch.is_tensor(value) or value.dim() == 0 or value.shape[0] != n:
        got = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise InputError(
            f"layer {key!r} does not output a (batch, ...) tensor with batch {n} (got {got}): "
            "pick another layer"
        )
    value = value.detach().float().cpu()
    if shape == "raw":
        return value
    if shape == "channels" and value.dim() >= 2:
        return value.reshape(n, value.shape[1], -1)
    return value.reshape(n, -1)


def _check_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` (default: the model's), checked against where the model's tensors live."""
    home = model_device(model)
    if device is None:
        return home
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: use e.g. 'cpu' or 'cuda'") from exc
    has_tensors = any(True for _ in model.parameters()) or any(True for _ in model.buffers())
    same = dev.type == home.type and (dev.index is None or home.index is None or dev == home)
    if has_tensors and not same:
        raise InputError(
            f"device={str(dev)!r} but the model lives on {str(home)!r}: move it first "
            f"(model.to({str(dev)!r})) or leave device unset"
        )
    return dev
