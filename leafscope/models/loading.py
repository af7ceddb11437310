"""One model loader for the library and every command: leafscope checkpoints (or a run folder's
newest), TorchScript files, and user factories (``MODULE:CALLABLE``) with a state_dict; a
:class:`~leafscope.models.spec.ModelSpec` names any of them in plain values.

:class:`ModelAdapter` wraps a model so that it normalises its inputs inside (inputs stay in
[0, 1] pixel units, so G is measured in those units) and selects the logits from a dict, tuple
or object output; it keeps the model's own layer and parameter names. Every message here names
the options by their library names (``normalize``, ``output``, ``factory``...), not CLI flags.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from leafscope.errors import CheckpointError, InputError, LeafscopeError
from leafscope.models.spec import ModelSpec

__all__ = [
    "NORMALIZE_PRESETS",
    "ModelAdapter",
    "ModelCallError",
    "build_from_factory",
    "is_torchscript",
    "load_model",
    "load_notes",
    "load_weights",
    "parse_normalize",
    "unwrap",
]

# Per-channel (mean, std) of common data sets, pixel values in [0, 1].
NORMALIZE_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,), (0.3081,)),
}

_STATE_KEYS = ("state_dict", "model_state_dict", "model_state", "model")


def _shorten(items: Sequence[str], limit: int = 5) -> str:
    items = sorted(items)
    text = ", ".join(items[:limit])
    return text + (f" … and {len(items) - limit} more" if len(items) > limit else "")


def parse_normalize(
    text: str | tuple[Sequence[float], Sequence[float]],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` from ``"M1,M2,M3:S1,S2,S3"``, a preset name
    (``cifar10``, ``cifar100``, ``imagenet``, ``mnist``) or a pair of sequences.

    One value on a side applies to every channel. Units: pixel values in [0, 1].

    Raises:
        InputError: not two lists of numbers, different lengths, or a std that is not > 0.
    """
    if isinstance(text, str):
        if text.strip().lower() in NORMALIZE_PRESETS:
            return NORMALIZE_PRESETS[text.strip().lower()]
        mean_text, sep, std_text = text.partition(":")
        try:
            if not sep:
                raise ValueError
            mean = tuple(float(t) for t in mean_text.split(","))
            std = tuple(float(t) for t in std_text.split(","))
        except ValueError as exc:
            raise InputError(
                f"`normalize` must be MEAN:STD with comma-separated numbers per channel, e.g. "
                f"0.4914,0.4822,0.4465:0.247,0.243,0.261, or one of "
                f"{', '.join(NORMALIZE_PRESETS)} (got {text!r})"
            ) from exc
    else:
        try:
            mean, std = (tuple(float(v) for v in side) for side in text)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"`normalize` must be a pair (mean, std) of sequences (got {text!r})"
            ) from exc
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise InputError(
            f"`normalize` has {len(mean)} means but {len(std)} stds: give one of each per channel"
        )
    if not all(s > 0 and s < float("inf") for s in std):
        raise InputError(f"`normalize` std values must be finite and > 0 (got {std})")
    return mean, std


def _select(out: Any, key: str | int | None, n: int) -> Tensor:
    """The logits in the output ``out`` of a batch of ``n`` inputs (see :class:`ModelAdapter`)."""
    hint = "as `output`"
    if isinstance(out, Tensor):
        if key is not None:
            raise InputError(
                f"the model returns a tensor, so there is nothing to select: drop `output={key}`"
            )
        logits = out
    elif isinstance(out, Mapping):
        names = [str(k) for k in out]
        if key is None:
            raise InputError(
                f"the model returns a {type(out).__name__} with keys {_shorten(names)}: pass the "
                f"key of the logits {hint}, e.g. `output={names[0] if names else 'logits'}`"
            )
        if key in out:
            logits = out[key]
        elif isinstance(key, str) and key.lstrip("-").isdigit() and int(key) in out:
            logits = out[int(key)]
        else:
            raise InputError(f"the model output has no key {key!r}: its keys are {_shorten(names)}")
    elif isinstance(out, (tuple, list)):
        if key is None:
            raise InputError(
                f"the model returns a {type(out).__name__} of {len(out)} items: pass the index "
                f"of the logits {hint}, e.g. `output=0`"
            )
        try:
            logits = out[int(key)]
        except (ValueError, IndexError) as exc:
            raise InputError(
                f"`output={key}` is not an index of the model's {len(out)}-item output: use "
                f"0..{len(out) - 1}"
            ) from exc
    else:
        if key is None:
            example = "logits" if hasattr(out, "logits") else "ATTRIBUTE"
            raise InputError(
                f"the model returns a {type(out).__name__}, not a tensor of logits: pass the "
                f"attribute holding them {hint}, e.g. `output={example}`"
            )
        if not isinstance(key, str) or not hasattr(out, key):
            raise InputError(f"the model's {type(out).__name__} output has no attribute {key!r}")
        logits = getattr(out, key)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != n:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        where = "the model's output" if key is None else f"the model's output {key!r}"
        raise InputError(
            f"{where} has shape {got} for a batch of {n} inputs; expected logits of shape "
            f"({n}, C), one row of C class scores per input: make the model return its logits "
            "(or select them with `output=KEY`)"
        )
    return logits


class ModelCallError(InputError):
    """The wrapped model raised on a batch: most often inputs of a shape or channel count the
    model does not take (callers that know the data may add how to convert it)."""


def _first_line(exc: BaseException, limit: int = 240) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:limit]


_SHARED = ("_parameters", "_buffers", "_modules")


class ModelAdapter(nn.Module):
    """``x ↦ select(model((x − mean) / std))``: normalisation inside, logits selection outside.

    Inputs stay in the units of the data (pixels in [0, 1]), so information matrices of the
    adapter are in those units: with ``z = (x − m)/s``, ``G_adapter(x) = S⁻¹ G_model(z) S⁻¹``,
    ``S = diag(s)`` per channel.

    The adapter shares the wrapped model's parameters, buffers and sub-modules under their own
    names: ``named_modules()``, ``named_parameters()``, ``state_dict()`` and
    :func:`torch.func.functional_call` see ``conv1``, ``fc2.weight``..., exactly as in the user's
    model (no prefix). :func:`unwrap` gives the wrapped module back; public attributes the adapter
    lacks (``config``...) are read from it. The adapter's own state has private names
    (``_output``, ``_notes``...), so every public name stays the user's; :func:`load_notes`
    reads what loading changed about the model.

    Args:
        model: the wrapped module (eager or TorchScript).
        mean: per-channel means (axis 1 of the input), one value for all channels, or None.
        std: per-channel standard deviations (> 0), or None (with ``mean`` None: no normalising).
        output: key, index (as int or digit string) or attribute holding the logits when the
            model returns a dict, tuple or object; None: the model must return a tensor.
        preset: the name of the normalisation preset ``mean``/``std`` come from (for messages,
            and to refuse a one-channel preset on inputs of several channels).
        size: ``(H, W)`` the model takes: images of another size are resized to it inside the
            model (bilinear, antialiased when shrinking; before the normalisation), so G stays
            in the data's pixel units at the data's size. None: inputs go in as they are.

    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        output: str | int | None = None,
        preset: str | None = None,
        size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise InputError(f"ModelAdapter wraps an nn.Module (got {type(model).__name__})")
        self._share(model)
        # The adapter's own state has underscore names set past nn.Module.__setattr__: the
        # public names (and the shared dicts) belong to the user's model.
        normalized = mean is not None or std is not None
        for key, value in (
            ("_output", output),
            ("_preset", preset),
            ("_notes", []),
            ("_normalized", normalized),
            ("_size", None if size is None else tuple(int(s) for s in size)),
        ):
            object.__setattr__(self, key, value)
        if normalized:
            mean, std = parse_normalize((mean if mean is not None else (0.0,), std or (1.0,)))
        # Plain float64 tensors (not buffers: the buffers are the model's), so that float64
        # analyses see the exact values; cast to the input's dtype and device on each call.
        object.__setattr__(self, "_mean", torch.tensor(mean or (0.0,), dtype=torch.float64))
        object.__setattr__(self, "_std", torch.tensor(std or (1.0,), dtype=torch.float64))

    def _share(self, model: nn.Module) -> None:
        object.__setattr__(self, "_wrapped", model)
        for name in _SHARED:
            object.__setattr__(self, name, getattr(model, name))
        persistent = getattr(model, "_non_persistent_buffers_set", None)
        if isinstance(persistent, set):
            object.__setattr__(self, "_non_persistent_buffers_set", persistent)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapped = self.__dict__.get("_wrapped")
            if wrapped is None or name.startswith("_"):
                raise
            if name == "model":  # the sub-module of older versions (names model.NAME)
                return wrapped
            return getattr(wrapped, name)

    def __deepcopy__(self, memo: dict) -> ModelAdapter:
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        skip = {"_wrapped", "_non_persistent_buffers_set", *_SHARED}
        for key, value in self.__dict__.items():
            if key not in skip:
                object.__setattr__(new, key, copy.deepcopy(value, memo))
        new._share(copy.deepcopy(self._wrapped, memo))
        return new

    def train(self, mode: bool = True) -> ModelAdapter:
        """Set the mode of the adapter, the wrapped model and every sub-module."""
        super().train(mode)
        self._wrapped.train(mode)
        return self

    def extra_repr(self) -> str:
        from leafscope.models.inspect import module_kind

        parts = [f"wraps={module_kind(self._wrapped)}"]
        if self._normalized:
            parts.append(f"normalize={self._preset or 'custom'}")
        if self._output is not None:
            parts.append(f"output={self._output!r}")
        if self.__dict__.get("_size") is not None:
            parts.append(f"size={self._size}")
        return ", ".join(parts)

    def _prepare(self, x: Tensor) -> Tensor:
        """What the wrapped model receives for inputs ``x`` (N, ...): ``(x − mean) / std``
        (``x`` itself when not normalising), resized first to the model's ``size`` if set."""
        x = self._resize(x)
        if not self._normalized:
            return x
        k = max(self._mean.numel(), self._std.numel())
        channels = x.shape[1] if x.dim() >= 2 else None
        if k == 1 and self._preset is not None and channels not in (None, 1) and x.dim() >= 3:
            raise InputError(_one_channel_preset(self._preset, channels, "the inputs have"))
        if k > 1 and channels != k:
            got = "no channel axis" if channels is None else f"{channels} channels"
            raise InputError(
                f"`normalize` has {k} values per channel but the inputs of shape "
                f"{tuple(x.shape)} have {got} (axis 1): give one mean and std per channel"
            )
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean, std = self._constants(x.device, x.dtype)
        return (x - mean.reshape(shape)) / std.reshape(shape)

    def _resize(self, x: Tensor) -> Tensor:
        size = self.__dict__.get("_size")
        if size is None or x.dim() != 4 or tuple(x.shape[-2:]) == size:
            return x
        shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
        return torch.nn.functional.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=shrink
        )

    def _constants(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` on ``device`` in ``dtype``, converted once per pair."""
        cache = self.__dict__.setdefault("_constants_cache", {})
        key = (str(device), dtype)
        if key not in cache:
            cache[key] = (
                self._mean.to(device=device, dtype=dtype),
                self._std.to(device=device, dtype=dtype),
            )
        return cache[key]

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, C) of inputs (N, ...) in data units."""
        wrapped = self._wrapped
        if wrapped.training != self.training:
            wrapped.training = self.training
        z = self._prepare(x)
        try:
            out = wrapped(z)
        except (torch.OutOfMemoryError, NotImplementedError):
            raise  # out of memory; an operation a transform (e.g. forward-mode AD) lacks
        except LeafscopeError:
            raise
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ModelCallError(
                f"the model fails on inputs of shape {tuple(x.shape)} ({type(exc).__name__}: "
                f"{_first_line(exc)}): check that the data's shape and channels fit the model"
            ) from exc
        return _select(out, self._output, x.shape[0])


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a :class:`ModelAdapter` (any other model: itself)."""
    while isinstance(model, ModelAdapter):
        model = model._wrapped
    return model


def load_notes(model: nn.Module) -> list[str]:
    """What :func:`load_model` changed about ``model`` (e.g. ``"model was in training mode; put
    in eval mode"``), one sentence each, for the results; ``[]`` when nothing."""
    notes = model.__dict__.get("_notes", []) if isinstance(model, nn.Module) else []
    return list(notes) if isinstance(notes, list) else []


def _one_channel_preset(preset: str, channels: int, who: str) -> str:
    many = [n for n, (m, _) in NORMALIZE_PRESETS.items() if len(m) == channels]
    example = ",".join(["0.5"] * channels) + ":" + ",".join(["0.25"] * channels)
    presets = f"a {channels}-channel preset ({', '.join(many)}) or " if many else ""
    return (
        f"`normalize={preset}` has 1 channel but {who} {channels}: use "
        f"{presets}MEAN:STD with one value per channel, e.g. `normalize={example}`"
    )


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``), not a ``torch.save`` file."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _import_module(module: str, spec: str):
    try:
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_file():
                raise InputError(f"`factory={spec}`: no Python file {path}: check the path")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(loader_spec)
            sys.modules[path.stem] = mod
            loader_spec.loader.exec_module(mod)
            return mod
        return importlib.import_module(module)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error while importing user code is reported
        hint = (
            "put its folder on PYTHONPATH (or pass a path/to/file.py:CALLABLE)"
            if isinstance(exc, ModuleNotFoundError)
            else "fix the module"
        )
        raise InputError(
            f"`factory={spec}`: cannot import module {module!r} ({type(exc).__name__}: "
            f"{_first_line(exc)}): {hint}"
        ) from exc


def build_from_factory(spec: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Call the factory ``MODULE:CALLABLE`` (``CALLABLE`` may be dotted, ``MODULE`` may be a
    ``.py`` file path) with keyword arguments ``kwargs`` and check it returns an ``nn.Module``.

    Raises:
        InputError: a malformed spec, a module that does not import (with the import error),
        a missing or non-callable attribute, a call that raises (the message names the factory,
        the exception's type and first line), or a result that is not a module.
    """
    module, sep, attr = str(spec).rpartition(":")
    if not sep or not module or not attr:
        raise InputError(
            f"`factory` must be MODULE:CALLABLE, e.g. mymodels:resnet (got {spec!r}); leafscope's "
            "own models are trained with leafscope train and loaded from their `checkpoint`"
        )
    obj: Any = _import_module(module, spec)
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise InputError(
                f"`factory={spec}`: {module!r} has no attribute {part!r} (it defines "
                f"{_shorten(names, 8)})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"`factory={spec}`: {attr!r} is a {type(obj).__name__}, not a callable")
    arguments = dict(kwargs or {})
    try:
        model = obj(**arguments)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error in user code becomes one line
        given = json.dumps(arguments, sort_keys=True, default=str)
        called = f" (called with `factory_kwargs={given}`)" if arguments else ""
        hint = (
            "check the factory's arguments (`factory_kwargs`)"
            if isinstance(exc, TypeError)
            else "fix the factory or its arguments (`factory_kwargs`)"
        )
        raise InputError(
            f"`factory={spec}` raised {type(exc).__name__}: {_first_line(exc, 200)}{called}: {hint}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise InputError(
            f"`factory={spec}` returned a {type(model).__name__}, not a torch.nn.Module: make the "
            "factory return the model"
        )
    return model


def _read_weights(path: Path) -> Any:
    from leafscope.models.checkpoint import load_torch_file

    return load_torch_file(path, "weights file")


def _state_dict_of(obj: Any, where: str) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        if obj.get("format") == "leafscope-checkpoint" and isinstance(
            obj.get("model_state"), Mapping
        ):
            return dict(obj["model_state"])
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), Mapping):
                return dict(obj[key])
        if obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
            return dict(obj)
    raise CheckpointError(
        f"{where} holds no state_dict (a dict of tensors, or a dict with a 'state_dict' or 'model' "
        "entry): save it with torch.save(model.state_dict(), path)"
    )


def load_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Any]) -> nn.Module:
    """Load a state_dict into ``model`` (in place) and return it.

    Args:
        model: the module to fill.
        source: a file (read with ``torch.load(weights_only=True)``) or a mapping: a state_dict,
            a leafscope checkpoint, or a dict with a ``state_dict``/``model_state_dict``/
            ``model_state``/``model`` entry. A ``module.`` prefix on every key (DataParallel)
            is dropped when the model's keys lack it.

    Raises:
        CheckpointError: unreadable file, no state_dict inside, or keys/shapes that do not fit
        (the message names the missing, unexpected and mis-shaped keys).
    """
    where = str(source) if not isinstance(source, Mapping) else "the weights"
    raw = source if isinstance(source, Mapping) else _read_weights(Path(source))
    state = _state_dict_of(raw, where)
    expected = model.state_dict()
    prefix = "module."
    if (
        state
        and all(k.startswith(prefix) for k in state)
        and not any(k.startswith(prefix) for k in expected)
    ):
        state = {k[len(prefix) :]: v for k, v in state.items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], Tensor) and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{label} [{_shorten(keys)}]"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatch (file vs model)", shapes),
            )
            if keys
        ]
        raise CheckpointError(
            f"weights in {where} do not fit the model ({'; '.join(parts)}): pass the weights "
            "saved from this architecture (or fix `factory_kwargs`)"
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"weights in {where} do not load: {str(exc).splitlines()[0][:200]}"
        ) from exc
    return model


def _load_file(path: Path, device: torch.device | str) -> tuple[nn.Module, bool]:
    """(model, is_user_model) from a leafscope checkpoint, a run folder or a TorchScript file."""
    from leafscope.models.checkpoint import load_checkpoint, select_checkpoint

    if path.is_dir():
        path = select_checkpoint(path)
    elif not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: it is neither a file (leafscope .pt or TorchScript) nor a "
            "run folder; check the path"
        )
    if is_torchscript(path):
        try:
            return torch.jit.load(str(path), map_location=device), True
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path} is a TorchScript archive that does not load "
                f"({str(exc).splitlines()[0][:160]})"
            ) from exc
    try:
        return load_checkpoint(path, device=device), False
    except CheckpointError as exc:
        try:
            _state_dict_of(_read_weights(path), str(path))
        except CheckpointError:
            raise exc from None
        raise CheckpointError(
            f"{path} holds weights only (no leafscope model config): pass it as `weights` with "
            "a `factory` MODULE:CALLABLE that builds the architecture"
        ) from exc


def load_model(
    checkpoint: str | os.PathLike | ModelSpec | None = None,
    *,
    factory: str | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    weights: str | os.PathLike | Mapping[str, Any] | None = None,
    normalize: str | tuple[Sequence[float], Sequence[float]] | None = None,
    output: str | int | None = None,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Load a classifier from one of the sources the commands accept, in eval mode on ``device``.

    The one loader: :meth:`ModelSpec.load <leafscope.models.spec.ModelSpec.load>` and every
    command come here; leafscope checkpoints are read by
    :func:`leafscope.training.load_checkpoint`.

    Args:
        checkpoint: a leafscope checkpoint ``.pt``, a run folder (its newest checkpoint), a
            TorchScript file (``torch.jit.save``; detected from its contents), a Hugging Face
            model ``hf:FOLDER`` / ``hf:OWNER/NAME[@REVISION]``, a timm model ``timm:NAME``
            (optional extras; see :mod:`leafscope.models.hub`), or a
            :class:`~leafscope.models.spec.ModelSpec` holding every option (then pass nothing
            else but ``device``).
        factory: ``MODULE:CALLABLE`` returning an ``nn.Module`` (instead of ``checkpoint``);
            ``MODULE`` is imported from the Python path or is a ``.py`` file.
        factory_kwargs: keyword arguments of the factory.
        weights: a state_dict file or mapping loaded into the model (see :func:`load_weights`).
        normalize: per-channel ``(mean, std)``, ``"MEAN:STD"`` or a preset name (see
            :func:`parse_normalize`) applied inside the model, so inputs stay in [0, 1]; its
            channel count must match the model's input channels when these are known.
        output: key, index or attribute of the logits when the model returns a dict, a tuple
            or an object (see :class:`ModelAdapter`).
        device: where to put the model.

    Returns:
        The model in eval mode. A leafscope checkpoint without ``normalize``/``output`` comes
        back as built (with its ``config``); every other model is wrapped in a
        :class:`ModelAdapter` (the model's own layer names; it checks the output is logits
        (N, C) on every call). A model that came in training mode is put in eval mode and
        :func:`load_notes` says so.

    Raises:
        InputError: no or two sources, a factory that fails, a bad option, or a normalisation
        whose channel count differs from the model's input channels. CheckpointError: a file
        that does not load, or weights that do not fit.

    Examples:
        >>> model = load_model(ModelSpec(factory="leafscope.models:build_model",
        ...                              factory_kwargs='{"name": "mlp", "in_features": 4}'))
        >>> [name for name, _ in model.named_parameters()][:1]
        ['fc1.weight']
    """
    if isinstance(checkpoint, ModelSpec):
        given = {
            "factory": factory,
            "factory_kwargs": factory_kwargs,
            "weights": weights,
            "normalize": normalize,
            "output": output,
        }
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise InputError(
                f"a ModelSpec holds every model option: set {', '.join(extra)} in the spec, "
                "not beside it"
            )
        spec = checkpoint
        checkpoint, factory, weights = spec.checkpoint, spec.factory, spec.weights
        factory_kwargs = json.loads(spec.factory_kwargs)
        normalize, output = spec.normalize, spec.output
    if (checkpoint is None) == (factory is None):
        raise InputError(
            "pass exactly one model source: a `checkpoint` (leafscope .pt, run folder or "
            "TorchScript file) or a `factory` MODULE:CALLABLE (with `weights`)"
        )
    from leafscope.models.hub import is_hub_source, load_hub_model

    hub = checkpoint if is_hub_source(checkpoint) else factory if is_hub_source(factory) else None
    if hub is not None:
        model = load_hub_model(
            str(hub), factory_kwargs=factory_kwargs, weights=weights, normalize=normalize,
            output=output,
        )  # fmt: skip
        return model.to(device).eval()
    if factory_kwargs and factory is None:
        raise InputError(
            "`factory_kwargs` are the keyword arguments of a `factory` MODULE:CALLABLE: name one"
        )
    mean = std = preset = None
    if normalize is not None:
        mean, std = parse_normalize(normalize)
        if isinstance(normalize, str) and normalize.strip().lower() in NORMALIZE_PRESETS:
            preset = normalize.strip().lower()
    if checkpoint is not None:
        model, user = _load_file(Path(checkpoint), device)
    else:
        model, user = build_from_factory(factory, factory_kwargs), True
    if weights is not None:
        load_weights(model, weights)
    if mean is not None:
        _check_normalize_channels(model, mean, std, preset)
    notes = []
    if model.training or any(m.training for m in model.modules()):
        notes.append("model was in training mode; put in eval mode" + _mode_layers(model))
    if user or mean is not None or output is not None:
        model = ModelAdapter(model, mean=mean, std=std, output=output, preset=preset)
        model._notes.extend(notes)
    return model.to(device).eval()


_MODE_DEPENDENT = ("BatchNorm", "Dropout", "InstanceNorm")


def _mode_layers(model: nn.Module) -> str:
    """`` (its BatchNorm2d, Dropout layers act differently in eval mode)`` or ``""``."""
    from leafscope.models.inspect import module_kind

    kinds = dict.fromkeys(
        kind
        for kind in (module_kind(m) for m in model.modules())
        if any(kind.startswith(prefix) for prefix in _MODE_DEPENDENT)
    )
    if not kinds:
        return ""
    return f" (its {', '.join(kinds)} layers act differently in eval mode)"


def _check_normalize_channels(
    model: nn.Module, mean: Sequence[float], std: Sequence[float], preset: str | None
) -> None:
    """Refuse a normalisation whose channel count differs from the model's input channels
    (when :func:`~leafscope.models.inspect.input_channels` knows them)."""
    from leafscope.models.inspect import input_channels

    channels = input_channels(model)
    k = max(len(mean), len(std))
    if channels is None or k == channels:
        return
    if k == 1:
        if preset is not None:
            raise InputError(_one_channel_preset(preset, channels, "the model takes"))
        return  # one explicit value applies to every channel
    what = f"`normalize={preset}`" if preset is not None else "`normalize`"
    side = "one value" if channels == 1 else f"{channels} values"
    raise InputError(
        f"{what} has {k} channels but the model takes {channels}-channel inputs: give one "
        f"mean and std per input channel (MEAN:STD with {side} a side)"
    )
