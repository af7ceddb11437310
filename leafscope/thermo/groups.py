"""Parameter groups of a layer: convolution filters, linear neurons, GNN input features.

A group is the set of parameters that one unit owns (theory §4):

- ``"filters"``: filter ``i`` of a convolution = ``weight[i]`` (all input channels and taps)
  plus ``bias[i]``;
- ``"neurons"``: neuron ``i`` of a linear layer = row ``weight[i, :]`` plus ``bias[i]``;
- ``"features"``: input feature ``j`` of a linear-like layer (e.g. the first ``GCNConv``) =
  column ``weight[:, j]``, the weights that multiply that feature (no bias: the bias does not
  belong to any input feature).

Layers are named as in ``model.named_modules()``. A module without its own ``weight`` but with
a ``lin`` sub-module (PyTorch Geometric's ``GCNConv``) uses ``lin.weight``; its bias is the
module's own ``bias``. Modules masked by :mod:`torch.nn.utils.prune` are read through
``weight_orig * weight_mask`` so the values are current even between forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from leafscope.errors import InputError
from leafscope.models.inspect import weight_module, weighted_layers

GroupKind = Literal["filters", "neurons", "features"]
KINDS: tuple[str, ...] = ("filters", "neurons", "features")


@dataclass(frozen=True)
class LayerGroups:
    """Where the groups of one layer live.

    Attributes:
        layer: module name in ``model.named_modules()``.
        kind: ``"filters"``, ``"neurons"`` or ``"features"``.
        weight_module: the module holding the weight tensor (``name`` itself or its ``lin``).
        bias_module: the module holding the per-output bias, or ``None`` (always ``None`` for
            ``"features"``).
        n_groups: number of groups (filters, neurons or input features).
        group_size: parameters per group ``d`` (same for every group of a layer).
    """

    layer: str
    kind: str
    weight_module: nn.Module
    bias_module: nn.Module | None
    n_groups: int
    group_size: int

    def weight(self) -> Tensor:
        """Current weight values (masked if the module is pruned)."""
        return current_tensor(self.weight_module, "weight")

    def bias(self) -> Tensor | None:
        """Current per-output bias values, or ``None``."""
        if self.bias_module is None:
            return None
        return current_tensor(self.bias_module, "bias")

    def group_sums(self, weight_values: Tensor, bias_values: Tensor | None = None) -> Tensor:
        """Sum per-parameter values (same shapes as weight / bias) into one value per group.

        Args:
            weight_values: tensor shaped like the weight, e.g. squared displacements.
            bias_values: tensor shaped like the bias, or ``None``.

        Returns:
            ``(n_groups,)`` per-group sums.
        """
        if self.kind == "features":
            return weight_values.sum(dim=0)
        sums = weight_values.reshape(weight_values.shape[0], -1).sum(dim=1)
        if bias_values is not None:
            sums = sums + bias_values
        return sums


def current_tensor(module: nn.Module, name: str) -> Tensor:
    """``module.<name>``, read through ``<name>_orig * <name>_mask`` when pruning is applied."""
    orig = module._parameters.get(name + "_orig")  # dict look-up: cheap on every step
    if orig is not None:
        return orig * module._buffers[name + "_mask"]
    return getattr(module, name)


def resolve_layer(model: nn.Module, layer: str, kind: str) -> LayerGroups:
    """Find the groups of ``layer`` of kind ``kind``.

    Args:
        model: the network.
        layer: module name, e.g. ``"conv1"`` or ``"features.0"``.
        kind: ``"filters"`` (conv, weight with ≥3 dims), ``"neurons"`` (2-D weight, rows) or
            ``"features"`` (2-D weight, columns).

    Returns:
        The :class:`LayerGroups` description.

    Raises:
        InputError: unknown layer name (the message lists valid ones), unknown kind, or a
            kind that does not fit the layer's weight shape.
    """
    if kind not in KINDS:
        raise InputError(f"unknown group kind {kind!r} for layer {layer!r}: use one of {KINDS}")
    modules = dict(model.named_modules())
    module = modules.get(layer)
    holder = weight_module(module) if module is not None else None
    if holder is None:
        valid = weighted_layers(model)
        raise InputError(
            f"unknown layer {layer!r}: {type(model).__name__} has layers with weights {valid}; "
            "pass one of these names"
        )
    weight = current_tensor(holder, "weight")
    if kind == "filters" and weight.dim() < 3:
        raise InputError(
            f"layer {layer!r} has a {weight.dim()}-D weight, not a convolution kernel: "
            "use kind 'neurons' (rows) or 'features' (columns)"
        )
    if kind in ("neurons", "features") and weight.dim() != 2:
        raise InputError(
            f"layer {layer!r} has a {weight.dim()}-D weight: kind {kind!r} needs a 2-D weight "
            "(use 'filters' for convolutions)"
        )
    if kind == "features":
        return LayerGroups(layer, kind, holder, None, weight.shape[1], weight.shape[0])
    n_out = weight.shape[0]
    bias_module = None
    for candidate in (holder, module):
        bias = getattr(candidate, "bias", None)
        if getattr(candidate, "bias_orig", None) is not None or (
            isinstance(bias, Tensor) and bias.shape == (n_out,)
        ):
            bias_module = candidate
            break
    size = weight[0].numel() + (1 if bias_module is not None else 0)
    return LayerGroups(layer, kind, holder, bias_module, n_out, size)
