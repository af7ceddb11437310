"""Group pruning: importance scores, choice of groups, masks through ``torch.nn.utils.prune``.

Scores (one per group; see :mod:`leafscope.thermo.groups` for what a group is):

- temperature — from :class:`~leafscope.thermo.monitor.TemperatureMonitor`;
- :func:`random_scores` — seeded uniform scores (control);
- :func:`magnitude_scores` — L1 norm ``Σ |w|`` of the group (weights and bias);
- :func:`taylor_scores` — ``Σ_k |w_k · ∂L/∂w_k|`` over the group, averaged over a few batches;
- :func:`feature_frequency` — number of samples/nodes where an input feature is non-zero
  ("rarest features first" = remove the lowest frequency).

Masks are applied with ``prune.custom_from_mask`` on the weight (and the bias for filters and
neurons), so they compose with other PyTorch pruning, survive fine-tuning (masked entries
stay zero) and can be undone with :func:`unmask` or made permanent with :func:`make_permanent`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from leafscope.errors import InputError
from leafscope.thermo.groups import LayerGroups, resolve_layer

__all__ = [
    "feature_frequency",
    "fine_tune",
    "magnitude_scores",
    "make_permanent",
    "mask_groups",
    "masked",
    "random_scores",
    "select_groups",
    "taylor_scores",
    "unmask",
]


def select_groups(
    scores: Tensor, k: int, action: str = "remove", end: str = "highest"
) -> list[int]:
    """Indices of the groups to mask.

    Args:
        scores: ``(G,)`` importance / temperature per group.
        k: how many groups to remove (``action="remove"``) or keep (``action="keep"``).
        action: ``"remove"`` masks the ``k`` selected groups; ``"keep"`` masks all others.
        end: ``"highest"`` (hottest, largest) or ``"lowest"`` (coldest, smallest) scores.

    Returns:
        Sorted group indices to mask. Ties are broken by group index (stable sort).
    """
    scores = torch.as_tensor(scores).detach().flatten().cpu()
    n = scores.numel()
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InputError(f"k must be a non-negative integer, got {k!r}")
    if k > n:
        raise InputError(f"k={k} is larger than the number of groups ({n}): use k <= {n}")
    if action not in ("remove", "keep"):
        raise InputError(f"unknown action {action!r}: use 'remove' or 'keep'")
    if end not in ("highest", "lowest"):
        raise InputError(f"unknown end {end!r}: use 'highest' (hottest) or 'lowest' (coldest)")
    order = torch.argsort(scores.double(), descending=end == "highest", stable=True)
    chosen = order[:k]
    if action == "keep":
        chosen = order[k:]
    return sorted(int(i) for i in chosen)


def _mask_shape_check(lg: LayerGroups, groups: Sequence[int]) -> list[int]:
    out = []
    for g in groups:
        try:
            g = operator.index(g)
        except TypeError as exc:
            raise InputError(f"group index {g!r} is not an integer") from exc
        if not 0 <= g < lg.n_groups:
            raise InputError(
                f"group {g} is out of range for layer {lg.layer!r} with {lg.n_groups} "
                f"{lg.kind}: use 0..{lg.n_groups - 1}"
            )
        out.append(g)
    return out


def mask_groups(
    model: nn.Module, layer: str, groups: Sequence[int], kind: str = "filters"
) -> LayerGroups:
    """Zero the given groups of ``layer`` through ``prune.custom_from_mask``.

    Args:
        model: the network (modified in place: forward pre-hooks + ``*_orig``/``*_mask``).
        layer: module name, e.g. ``"conv1"``.
        groups: indices of filters / neurons / input features to zero.
        kind: ``"filters"``, ``"neurons"`` or ``"features"``.

    Returns:
        The layer's :class:`LayerGroups`.
    """
    lg = resolve_layer(model, layer, kind)
    idx = _mask_shape_check(lg, groups)
    weight = lg.weight()
    mask = torch.ones_like(weight)
    if idx:
        if kind == "features":
            mask[:, idx] = 0
        else:
            mask[idx] = 0
    prune.custom_from_mask(lg.weight_module, "weight", mask)
    if lg.bias_module is not None:
        bias_mask = torch.ones_like(lg.bias())
        if idx:
            bias_mask[idx] = 0
        prune.custom_from_mask(lg.bias_module, "bias", bias_mask)
    # refresh the masked attributes now (prune only does it in the next forward pass)
    with torch.no_grad():
        _refresh(lg.weight_module, "weight")
        if lg.bias_module is not None:
            _refresh(lg.bias_module, "bias")
    return lg


def _refresh(module: nn.Module, name: str) -> None:
    setattr(module, name, getattr(module, name + "_orig") * getattr(module, name + "_mask"))


def _pruned_modules(model: nn.Module, layer: str) -> list[tuple[nn.Module, str]]:
    modules = dict(model.named_modules())
    if layer not in modules:
        raise InputError(f"unknown layer {layer!r}: use one of {[n for n in modules if n]}")
    found = []
    for module in modules[layer].modules():
        for name in ("weight", "bias"):
            if hasattr(module, name + "_orig"):
                found.append((module, name))
    return found


def unmask(model: nn.Module, layer: str) -> None:
    """Undo every mask on ``layer`` (and its sub-modules): the original values come back."""
    for module, name in _pruned_modules(model, layer):
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name:
                del module._forward_pre_hooks[key]
        orig = module._parameters.pop(name + "_orig")
        del module._buffers[name + "_mask"]
        if hasattr(module, name):
            delattr(module, name)
        module.register_parameter(name, orig)


def make_permanent(model: nn.Module, layer: str) -> None:
    """Bake the masks of ``layer`` into its parameters (``prune.remove``)."""
    for module, name in _pruned_modules(model, layer):
        prune.remove(module, name)


@contextmanager
def masked(
    model: nn.Module, layer: str, groups: Sequence[int], kind: str = "filters"
) -> Iterator[nn.Module]:
    """Context manager: ``groups`` of ``layer`` are zeroed inside, restored on exit."""
    mask_groups(model, layer, groups, kind)
    try:
        yield model
    finally:
        unmask(model, layer)


def random_scores(n_groups: int, seed: int) -> Tensor:
    """``(n_groups,)`` seeded uniform scores (random-order control)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(n_groups, generator=gen, dtype=torch.float64)


def magnitude_scores(model: nn.Module, layer: str, kind: str = "filters") -> Tensor:
    """``(G,)`` L1 norm of each group (weights, plus bias for filters / neurons)."""
    lg = resolve_layer(model, layer, kind)
    with torch.no_grad():
        bias = lg.bias()
        return lg.group_sums(lg.weight().abs(), None if bias is None else bias.abs()).double().cpu()


def taylor_scores(
    model: nn.Module,
    layer: str,
    batches: Iterable[Any],
    loss_fn: Callable[[nn.Module, Any], Tensor],
    kind: str = "filters",
) -> Tensor:
    """First-order Taylor importance ``Σ_k |w_k ∂L/∂w_k|`` per group, averaged over batches.

    Args:
        model: the network (gradients are computed, parameters are not changed).
        layer: module name.
        batches: a few batches, each passed to ``loss_fn``.
        loss_fn: ``loss_fn(model, batch) -> scalar loss``.
        kind: group kind.

    Returns:
        ``(G,)`` float64 scores.
    """
    lg = resolve_layer(model, layer, kind)
    total = None
    count = 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            weight, bias = lg.weight(), lg.bias()
            params = [weight] + ([bias] if bias is not None else [])
            loss = loss_fn(model, batch)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                gw = (weight * _zero_if_none(grads[0], weight)).abs()
                gb = (bias * _zero_if_none(grads[1], bias)).abs() if bias is not None else None
                scores = lg.group_sums(gw, gb).double().cpu()
            total = scores if total is None else total + scores
            count += 1
    finally:
        model.train(was_training)
    if count == 0:
        raise InputError("taylor_scores got no batches: pass at least one batch")
    return total / count


def _zero_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def feature_frequency(x: Tensor) -> Tensor:
    """``(F,)`` number of rows (nodes / samples) of ``x`` ``(N, F)`` where feature j ≠ 0."""
    if x.dim() != 2:
        raise InputError(
            f"feature matrix must be 2-D (nodes, features), got shape {tuple(x.shape)}"
        )
    return (x != 0).sum(dim=0).double().cpu()


def fine_tune(
    model: nn.Module,
    train: Any,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    loss_fn: Callable[[nn.Module, Any], Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Optional retraining after masking with :func:`leafscope.training.fit` (Adam, no weight
    decay); masked entries stay zero (the masks multiply ``*_orig`` in every forward pass).

    Args:
        model: a masked network (trained in place).
        train: any data :func:`fit` accepts (``(inputs, labels)`` tensors, an image set, a
            Dataset, a PyG graph); mini-batches in a seeded order.
        epochs: passes over ``train``; 0 does nothing.
        lr: Adam learning rate.
        batch_size, seed: batch size and seed of the order (and of torch's RNG).
        loss_fn: ``loss_fn(model, batch) -> (loss, logits, targets)`` or a scalar loss;
            None = cross-entropy.
        device: where to train.

    Returns:
        ``model``, in eval mode.
    """
    from leafscope.training import fit

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"fine-tuning epochs must be a non-negative integer, got {epochs!r}")
    if epochs == 0:
        return model
    fit(model, train, None, epochs=epochs, optimizer="adam", lr=lr, batch_size=batch_size,
        seed=seed, loss_fn=loss_fn, device=device, progress=False)  # fmt: skip
    model.eval()
    return model
