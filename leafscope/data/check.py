"""Does a model take these data? One forward pass, and one clear error naming both shapes."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from leafscope.errors import InputError

__all__ = ["check_model_input", "expected_input_shape"]


def expected_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The shape of one input a model was built for, when the model records it.

    Read from ``model.config`` (leafscope models: ``in_features``, or ``in_channels`` and
    ``image_size``) or a ``model.input_shape`` attribute.

    Returns:
        ``(C, H, W)``, ``(D,)``, or None when unknown.
    """
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict):
        if isinstance(cfg.get("in_features"), int):
            return (cfg["in_features"],)
        if isinstance(cfg.get("in_channels"), int) and isinstance(cfg.get("image_size"), int):
            return (cfg["in_channels"], cfg["image_size"], cfg["image_size"])
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(s, int) for s in shape):
        return tuple(shape)
    return None


def _flattens(model: nn.Module) -> bool:
    cfg = getattr(model, "config", None)
    return isinstance(cfg, dict) and cfg.get("name") == "mlp"


def _compatible(got: tuple[int, ...], want: tuple[int, ...], flattens: bool) -> bool:
    if got == want:
        return True
    return flattens and math.prod(got) == math.prod(want) and 1 in (len(got), len(want))


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, shape)]) + ")"


def _first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
        if isinstance(module, nn.Linear):
            return None
    return None


def _fix(got: tuple[int, ...], want: tuple[int, ...] | None, channels: int | None) -> str:
    """The parameters (`grey`, `resize=H,W`: the commands show them as flags) that turn
    ``got`` into ``want``, or what cannot."""
    if want is not None and len(want) != len(got):
        if len(got) == 1:
            return "the data are vectors but the model takes images: give (N, C, H, W) images"
        return "the data are images but the model takes vectors: give (N, D) vectors"
    want_c = want[0] if want is not None else channels
    flags, notes = [], []
    if want_c is not None and len(got) == 3 and want_c != got[0]:
        if want_c == 1 and got[0] in (2, 3, 4):
            flags.append("`grey`")
        else:
            notes.append(f"the model takes {want_c}-channel images and the data have {got[0]}")
    if want is not None and len(want) == 3 and want[1:] != got[1:]:
        flags.append(f"`resize={want[1]},{want[2]}`")
    if flags:
        grey = "grey=True" if "`grey`" in flags else ""
        size = f"size=({want[1]}, {want[2]})" if want is not None and want[1:] != got[1:] else ""
        call = ", ".join(p for p in (grey, size) if p)
        notes.insert(
            0,
            f"pass {' '.join(flags)} (library: "
            f"leafscope.data.transforms.apply_transforms(data, {call}))",
        )
    if not notes:
        notes.append("give data of the shape the model was trained on (`grey`, `resize=H,W`)")
    return "; ".join(notes)


def check_model_input(model: nn.Module, data: Any, source: str = "the data") -> None:
    """Check that ``model`` takes ``data`` by running it on one input.

    The recorded input shape (:func:`expected_input_shape`) is compared first (an MLP also takes
    the flattened shape); then one point is passed through the model in eval mode without
    gradients (the mode is restored). Any shape or channel error becomes one
    :class:`InputError` naming both shapes and the parameters that fix it (`grey`,
    `resize=H,W`; the commands show them as ``--grey``, ``--resize H,W``).

    Args:
        model: a classifier (its parameters' device and dtype are used for the probe).
        data: an :class:`~leafscope.data.ImageDataset` or a tensor (N, ...).
        source: what to call the data in the message.

    Raises:
        InputError: the model does not accept the data or does not return (1, C) logits.
    """
    x = data.images if hasattr(data, "images") else data
    if isinstance(x, (list, tuple)) and x and all(isinstance(t, str) for t in x):
        _check_text_model(model, x, source)
        return
    if not torch.is_tensor(x) or x.ndim < 2 or len(x) == 0:
        raise InputError(f"{source}: expected a non-empty tensor (N, ...), got {type(x).__name__}")
    got = tuple(int(s) for s in x.shape[1:])
    want = expected_input_shape(model)
    if want is not None and not _compatible(got, want, _flattens(model)):
        raise InputError(
            f"model expects inputs {_shape(want)} but {source} are {_shape(got)}: "
            + _fix(got, want, None)
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x[:1].to(device=device, dtype=dtype))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        from leafscope.errors import LeafscopeError
        from leafscope.models.loading import ModelCallError

        if isinstance(exc, LeafscopeError) and not isinstance(exc, ModelCallError):
            raise  # one line already naming the problem (outputs, normalisation): no shape advice
        head = (
            f"model expects inputs {_shape(want)} but {source} are {_shape(got)}"
            if want is not None
            else f"model rejects {source}, of shape {_shape(got)}"
        )
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"{head} ({type(exc).__name__}: {first}): "
            + _fix(got, want, _first_conv_channels(model))
        ) from None
    finally:
        model.train(was_training)
    if not torch.is_tensor(out) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise InputError(
            f"model maps one input {_shape(got)} of {source} to {shape}, expected logits (1, C): "
            "check that the model is a classifier for these data"
        )


def _check_text_model(model: nn.Module, texts: Any, source: str) -> None:
    """Texts need a model that tokenises them (a text classifier); one forward on one text."""
    from leafscope.errors import LeafscopeError

    if not callable(getattr(model, "tokenize", None)):
        raise InputError(
            f"{source} are texts but the model takes tensors: give a text classifier, e.g. "
            "`checkpoint=hf:FOLDER` of a sequence classifier saved with its tokenizer"
        )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(type(texts)(texts[:1]))
    except LeafscopeError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"the text model fails on {source} ({type(exc).__name__}: {first})"
        ) from None
    finally:
        model.train(was_training)
    if not torch.is_tensor(out) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise InputError(f"the text model maps one text to {shape}, expected logits (1, C)")
