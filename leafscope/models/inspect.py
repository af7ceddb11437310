"""What a model is made of: its module names, the modules that own a weight, where it lives.

Works on any ``nn.Module``, TorchScript modules included. Layers are named as in
``model.named_modules()`` (the root, named ``""``, is never listed); a model loaded by
:func:`leafscope.models.load_model` keeps the user's own names (``conv1``, not ``model.conv1``;
the prefixed names of older versions are still accepted by :func:`resolve_modules`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from leafscope.errors import InputError

__all__ = [
    "canonical_names",
    "input_channels",
    "model_device",
    "module_kind",
    "module_names",
    "resolve_modules",
    "weight_module",
    "weighted_layers",
]

_MAX_LISTED = 30


def module_names(model: nn.Module) -> list[str]:
    """Names of every sub-module of ``model``, in registration order (any of them can be hooked).

    Example: ``nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())`` gives ``["0", "1"]``.
    """
    return [name for name, _ in model.named_modules() if name]


def module_kind(module: nn.Module) -> str:
    """The class name of ``module``: ``"Conv2d"``, ``"Linear"``... (for a TorchScript module, the
    class it was scripted or traced from, its ``original_name``)."""
    if isinstance(module, torch.jit.ScriptModule):
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


_CONV_KINDS = ("Conv1d", "Conv2d", "Conv3d")


def input_channels(model: nn.Module) -> int | None:
    """The channel count (axis 1) of the inputs ``model`` takes, when it can be told.

    From ``model.config["in_channels"]`` (leafscope models), a ``model.input_shape`` of an
    image, else the first convolution in registration order when no ``Linear`` comes before
    it (``weight.shape[1] × groups``). Works through a :class:`~leafscope.models.ModelAdapter`
    and on TorchScript modules.

    Returns:
        The channel count, or None when unknown (e.g. a model of vectors).
    """
    from leafscope.models.loading import unwrap

    user = unwrap(model)
    config = getattr(user, "config", None)
    if isinstance(config, dict) and isinstance(config.get("in_channels"), int):
        if config.get("name") not in ("gcn", "gcn_link"):
            return int(config["in_channels"])
    shape = getattr(user, "input_shape", None)
    if isinstance(shape, (tuple, list, torch.Size)) and len(shape) >= 2:
        if all(isinstance(s, int) for s in shape):
            return int(shape[0])
    for name, module in user.named_modules():
        if not name:
            continue
        kind = module_kind(module)
        if kind in _CONV_KINDS:
            weight = getattr(module, "weight", None)
            try:
                if isinstance(weight, Tensor) and weight.dim() >= 3:
                    groups = getattr(module, "groups", 1)
                    return int(weight.shape[1]) * (groups if isinstance(groups, int) else 1)
            except (RuntimeError, ValueError):  # an uninitialised (lazy) weight
                return None
            return None
        if kind == "Linear":
            return None
    return None


def weight_module(module: nn.Module) -> nn.Module | None:
    """The module holding ``module``'s weight: itself, its ``lin`` sub-module, or ``None``.

    A module owns a weight when it has a tensor ``weight`` (or ``weight_orig``, when masked by
    :mod:`torch.nn.utils.prune`); PyTorch Geometric's ``GCNConv`` keeps it in ``lin.weight``.
    """
    if isinstance(getattr(module, "weight", None), Tensor) or hasattr(module, "weight_orig"):
        return module
    lin = getattr(module, "lin", None)
    if isinstance(lin, nn.Module) and (
        isinstance(getattr(lin, "weight", None), Tensor) or hasattr(lin, "weight_orig")
    ):
        return lin
    return None


def weighted_layers(model: nn.Module) -> list[str]:
    """Names of the sub-modules that own a weight (see :func:`weight_module`), in order.

    Example: ``nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(4, 3))`` gives
    ``["0", "2"]``.
    """
    return [
        name for name, module in model.named_modules() if name and weight_module(module) is not None
    ]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter, else of its first buffer, else the CPU.

    A model split over several devices reports the device of its first parameter.
    """
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _lookup(model: nn.Module, modules: dict[str, nn.Module], name: str) -> nn.Module | None:
    """``modules[name]``, or for a :class:`~leafscope.models.ModelAdapter` the older prefixed
    name ``model.NAME``."""
    if name in modules:
        return modules[name] if name else None
    from leafscope.models.loading import ModelAdapter

    if isinstance(model, ModelAdapter) and name.startswith("model.") and len(name) > 6:
        return modules.get(name[len("model.") :])
    return None


def canonical_names(model: nn.Module, names: str | Sequence[str]) -> dict[str, str]:
    """``{name as given: name in model.named_modules()}`` for names :func:`resolve_modules`
    accepts (the older ``model.NAME`` of an adapted model maps to ``NAME``)."""
    modules = dict(model.named_modules())
    out = {}
    for name in resolve_modules(model, names):
        out[name] = name if name in modules else name[len("model.") :]
    return out


def resolve_modules(model: nn.Module, names: str | Sequence[str]) -> dict[str, nn.Module]:
    """The sub-modules called ``names`` (one name or several; duplicates dropped, order kept).

    Names are those of :func:`module_names`; for a model loaded by
    :func:`leafscope.models.load_model`, the older ``model.NAME`` is accepted for ``NAME``.

    Raises:
        InputError: no names, or a name that is not in :func:`module_names` (the message lists
            the valid ones).
    """
    modules = dict(model.named_modules())
    wanted = list(dict.fromkeys([names] if isinstance(names, str) else names))
    found = {name: _lookup(model, modules, name) for name in wanted}
    bad = [name for name, module in found.items() if module is None]
    if bad or not wanted:
        valid = module_names(model)
        shown = ", ".join(valid[:_MAX_LISTED])
        if len(valid) > _MAX_LISTED:
            shown += f", ... ({len(valid) - _MAX_LISTED} more: see module_names(model))"
        what = f"unknown layer(s) {bad}" if bad else "no layer names given"
        from leafscope.models.loading import unwrap

        raise InputError(
            f"{what} for {module_kind(unwrap(model))}: pass names from model.named_modules(), "
            f"one of {shown or '(the model has no sub-modules)'}"
        )
    return found
