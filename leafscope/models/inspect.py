"""What a model is made of: its module names, the modules that own a weight, where it lives.

Works on any ``nn.Module``. Layers are named as in ``model.named_modules()`` (the root, named
``""``, is never listed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from leafscope.errors import InputError

__all__ = ["model_device", "module_names", "resolve_modules", "weight_module", "weighted_layers"]

_MAX_LISTED = 30


def module_names(model: nn.Module) -> list[str]:
    """Names of every sub-module of ``model``, in registration order (any of them can be hooked).

    Example: ``nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())`` gives ``["0", "1"]``.
    """
    return [name for name, _ in model.named_modules() if name]


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


def resolve_modules(model: nn.Module, names: str | Sequence[str]) -> dict[str, nn.Module]:
    """The sub-modules called ``names`` (one name or several; duplicates dropped, order kept).

    Raises:
        InputError: no names, or a name that is not in :func:`module_names` (the message lists
            the valid ones).
    """
    modules = dict(model.named_modules())
    wanted = list(dict.fromkeys([names] if isinstance(names, str) else names))
    bad = [name for name in wanted if not name or name not in modules]
    if bad or not wanted:
        valid = module_names(model)
        shown = ", ".join(valid[:_MAX_LISTED])
        if len(valid) > _MAX_LISTED:
            shown += f", ... ({len(valid) - _MAX_LISTED} more: see module_names(model))"
        what = f"unknown layer(s) {bad}" if bad else "no layer names given"
        raise InputError(
            f"{what} for {type(model).__name__}: pass names from model.named_modules(), "
            f"one of {shown or '(the model has no sub-modules)'}"
        )
    return {name: modules[name] for name in wanted}
