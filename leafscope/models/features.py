"""Reach into a model: outputs of named layers, and the penultimate features of a classifier.

Everything here runs the model in batches, without gradients, in eval mode (each module's mode
is restored after), on the model's device unless told otherwise, and returns float32 tensors
on the CPU. Layers are named as in ``model.named_modules()`` (see
:func:`leafscope.models.inspect.module_names`).

The *head* of a classifier is its last ``nn.Linear`` (the one producing the logits); its input
is the penultimate feature vector. :class:`leafscope.testing.LinearSoftmax` (no ``nn.Linear``)
counts its flattened input as the features.

TorchScript modules take no forward hooks: their features are computed by running the model's
top-level sub-modules in order (``Sequential`` sub-modules one layer at a time; the tensor is
flattened before a top-level ``Linear`` that takes it flat), and only when that composition
reproduces the model's own output on every batch (checked with :func:`torch.allclose`,
tolerance relative to the output's scale); otherwise one :class:`InputError` says what works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.models.inspect import canonical_names, model_device, module_kind, resolve_modules

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
        model: any ``nn.Module`` mapping a batch ``x[i:j]`` to anything; a TorchScript model
            (or one loaded by :func:`~leafscope.models.load_model` from a TorchScript file)
            when its sub-modules compose (see the module's notes).
        x: (N, ...) inputs; floating inputs are cast to the model's floating dtype.
        layers: one name or several, from ``model.named_modules()`` (the user's own names for
            a model from :func:`~leafscope.models.load_model`).
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
            not a (N, ...) tensor, an unknown ``shape``, empty ``x``, a wrong device, or a
            TorchScript model whose sub-modules do not compose.
    """
    if shape not in SHAPES:
        raise InputError(f"unknown shape {shape!r}: use one of {SHAPES}")
    script = _script_parts(model)
    if script is not None:
        names = canonical_names(model, layers)
        taps = {given: (name, False) for given, name in names.items()}
        return _collect_composed(
            model, script, x, taps, shape=shape, batch_size=batch_size, device=device
        )
    modules = resolve_modules(model, layers)
    taps = {name: (module, False) for name, module in modules.items()}
    return _collect(model, x, taps, shape=shape, batch_size=batch_size, device=device)


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        isinstance(module, torch.jit.ScriptModule) and module_kind(module) == "Linear"
    )


def _head_entry(model: nn.Module) -> tuple[str, nn.Module] | None:
    """``(name, module)`` of the last ``nn.Linear`` (TorchScript: ``original_name`` Linear)."""
    linears = [(name, m) for name, m in model.named_modules() if name and _is_linear(m)]
    if not linears and _is_linear(model):
        return "", model
    return linears[-1] if linears else None


def head_of(model: nn.Module) -> tuple[nn.Module | None, Tensor, Tensor]:
    """The logit layer: ``(module, weight (C, F), bias (C,))``; module None for LinearSoftmax.

    The last ``nn.Linear`` in ``model.named_modules()`` (of a TorchScript model: the last
    sub-module scripted or traced from ``nn.Linear``).

    Raises:
        InputError: the model has neither an ``nn.Linear`` nor a 2-D ``weight`` of its own.
    """
    entry = _head_entry(model)
    if entry is not None:
        last = entry[1]
        weight = last.weight
        bias = last.bias if last.bias is not None else torch.zeros(weight.shape[0])
        return last, weight, bias
    if isinstance(getattr(model, "weight", None), Tensor) and model.weight.dim() == 2:
        return None, model.weight, model.bias
    from leafscope.models.loading import unwrap

    raise InputError(
        f"{module_kind(unwrap(model))} has no nn.Linear layer: penultimate features need a "
        "classifier whose last layer is nn.Linear (its input is the penultimate feature vector)"
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
    script = _script_parts(model)
    if script is not None and head is not None:
        name = _head_entry(model)[0]
        taps = {"features": (name, True), "logits": ("", False)}
        out = _collect_composed(
            model, script, x, taps, shape="flat", batch_size=batch_size, device=device
        )
    else:
        taps = {"features": (model if head is None else head, True), "logits": (model, False)}
        out = _collect(model, x, taps, shape="flat", batch_size=batch_size, device=device)
    result = FeatureOutputs(out["features"], out["logits"])
    dtype = weight.dtype
    check = result.features[:4].to(dtype) @ weight.detach().cpu().T + bias.detach().cpu()
    if check.shape != result.logits[:4].shape or not torch.allclose(
        check.float(), result.logits[:4], rtol=1e-3, atol=1e-3
    ):
        from leafscope.models.loading import unwrap

        raise InputError(
            f"the last nn.Linear of {module_kind(unwrap(model))} does not produce its logits (a "
            "layer follows it): penultimate features need a model ending in nn.Linear"
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
    dev, dtype = _run_settings(model, x, batch_size, device)
    scripted = [k for k, (m, _) in taps.items() if isinstance(m, torch.jit.ScriptModule)]
    if scripted:
        raise InputError(
            f"layer(s) {scripted} are TorchScript modules inside a Python model: their outputs "
            "cannot be recorded (TorchScript takes no forward hooks); pick Python layers, or "
            "pass the TorchScript model itself"
        )
    store: dict[str, list[Tensor]] = {key: [] for key in taps}
    n_batch = 0

    def hook_for(key: str, take_input: bool):
        def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
            value = inputs[0] if take_input and inputs else output
            store[key].append(_shaped(value, key, n_batch, shape))

        return hook

    handles = [m.register_forward_hook(hook_for(k, inp)) for k, (m, inp) in taps.items()]
    modes = _modes(model)
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


def _run_settings(
    model: nn.Module, x: Tensor, batch_size: int, device: str | torch.device | None
) -> tuple[torch.device, torch.dtype | None]:
    """Checked inputs: the device of the forward passes and the model's floating dtype."""
    if not torch.is_tensor(x) or x.dim() == 0 or x.shape[0] == 0:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise InputError(f"x must be a (N, ...) tensor with N >= 1 (got {got})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
    dev = _check_device(model, device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return dev, dtype


def _modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Every module's training flag (the wrapped roots of adapters included), to restore."""
    from leafscope.models.loading import ModelAdapter

    modules = list(model.modules())
    inner = model
    while isinstance(inner, ModelAdapter):
        inner = inner._wrapped
        modules.append(inner)
    return [(m, m.training) for m in modules]


def _script_parts(model: nn.Module):
    """``(script_module, prepare)`` when ``model`` is a TorchScript module or adapters around
    one (``prepare`` maps the model's inputs to the script module's: the normalisation)."""
    from leafscope.models.loading import ModelAdapter

    adapters = []
    inner = model
    while isinstance(inner, ModelAdapter):
        adapters.append(inner)
        inner = inner._wrapped
    if not isinstance(inner, torch.jit.ScriptModule):
        return None

    def prepare(x: Tensor) -> Tensor:
        for adapter in adapters:
            x = adapter._prepare(x)
        return x

    return inner, prepare


class _NotComposable(Exception):
    """The sub-modules of a TorchScript model, run in order, do not give its output."""


def _compose(
    module: nn.Module, h: Tensor, prefix: str, record: dict[str, tuple[Tensor, Tensor]]
) -> Tensor:
    """Run ``module``'s children in order on ``h``, recording ``(input, output)`` by name.

    ``Sequential`` children are run one layer at a time; at the top level of a model that is
    not itself a ``Sequential``, a tensor is flattened before a ``Linear`` that takes it flat.
    """
    children = list(module.named_children())
    if not children:
        raise _NotComposable("it has no sub-modules")
    flattens = not prefix and module_kind(module) != "Sequential"
    for name, child in children:
        kind = module_kind(child)
        if flattens and kind == "Linear" and h.dim() > 2:
            weight = getattr(child, "weight", None)
            if isinstance(weight, Tensor) and weight.dim() == 2:
                if weight.shape[1] == h[0].numel() and weight.shape[1] != h.shape[-1]:
                    h = h.flatten(1)
        given = h
        if kind == "Sequential" and any(True for _ in child.children()):
            h = _compose(child, h, f"{prefix}{name}.", record)
        else:
            h = child(h)
        if not isinstance(h, Tensor):
            raise _NotComposable(f"sub-module {prefix}{name} returns a {type(h).__name__}")
        record[f"{prefix}{name}"] = (given, h)
    return h


_REFUSAL = (
    "so its layer and penultimate features cannot be read: load the model from its Python code "
    "(a `factory` MODULE:CALLABLE with its `weights`) for every feature; the TorchScript model "
    "still works for G, spectra, paths and walks"
)


def _composition_error(script: nn.Module, reason: str) -> InputError:
    return InputError(
        f"the sub-modules of the TorchScript model {module_kind(script)}, run in order, do not "
        f"reproduce its output ({reason}), {_REFUSAL}"
    )


def _matches(composed: Tensor, own: Tensor) -> str | None:
    """None when ``composed`` equals ``own`` up to rounding, else how they differ."""
    if composed.shape != own.shape:
        return f"shape {tuple(composed.shape)} against {tuple(own.shape)}"
    scale = float(own.detach().abs().max()) if own.numel() else 0.0
    tol = max(1e-5, 100 * torch.finfo(own.dtype).eps) if own.is_floating_point() else 0.0
    if torch.allclose(composed, own, rtol=tol, atol=tol * max(scale, 1e-12)):
        return None
    diff = float((composed - own).abs().max())
    return f"largest difference {diff:.3g} at output scale {scale:.3g}"


@torch.no_grad()
def _collect_composed(
    model: nn.Module,
    script: tuple[nn.Module, object],
    x: Tensor,
    taps: dict[str, tuple[str, bool]],
    *,
    shape: Shape,
    batch_size: int,
    device: str | torch.device | None,
) -> dict[str, Tensor]:
    """:func:`_collect` for TorchScript: ``taps[key] = (layer name, take_input)`` ("" is the
    model itself), recorded by composing the script module's sub-modules, checked per batch."""
    root, prepare = script
    dev, dtype = _run_settings(model, x, batch_size, device)
    store: dict[str, list[Tensor]] = {key: [] for key in taps}
    modes = _modes(model)
    model.eval()
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            cast = dtype if dtype is not None and xb.is_floating_point() else None
            xb = xb.to(device=dev, dtype=cast)
            logits = model(xb) if any(n == "" and not i for n, i in taps.values()) else None
            z = prepare(xb)
            own = root(z)
            if not isinstance(own, Tensor):
                raise _composition_error(root, f"the model returns a {type(own).__name__}")
            record: dict[str, tuple[Tensor, Tensor]] = {}
            try:
                composed = _compose(root, z, "", record)
            except _NotComposable as exc:
                raise _composition_error(root, str(exc)) from None
            except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
                first = (str(exc).strip().splitlines() or [""])[0][:160]
                raise _composition_error(root, f"{type(exc).__name__}: {first}") from None
            problem = _matches(composed, own)
            if problem is not None:
                raise _composition_error(root, problem)
            missing = [name for name, _ in taps.values() if name and name not in record]
            if missing:
                raise InputError(
                    f"layer(s) {missing} of the TorchScript model {module_kind(root)} cannot be "
                    "read: its features come from running its sub-modules in order, which "
                    f"reaches {', '.join(list(record)[:30])}; pick one of these, or load the "
                    "model from its Python code (a `factory` MODULE:CALLABLE with its `weights`)"
                )
            for key, (name, take_input) in taps.items():
                if name:
                    value = record[name][0 if take_input else 1]
                else:
                    value = xb if take_input else logits
                store[key].append(_shaped(value, key, xb.shape[0], shape))
    finally:
        for module, mode in modes:
            module.training = mode
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
