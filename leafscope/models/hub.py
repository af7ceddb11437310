"""Models by path or id: ``hf:PATH_OR_ID[@REVISION]`` (Hugging Face ``transformers``) and
``timm:NAME`` (``timm``), both optional extras imported only when such a model is loaded.

``hf:`` loads ``AutoModelForImageClassification`` or ``AutoModelForSequenceClassification``
(chosen from the model's config) from a local folder (``save_pretrained``) or from the local
Hugging Face cache (``HF_HUB_OFFLINE=1`` works; online, a missing id is downloaded by
``transformers`` itself). An image classifier gets the normalisation and the input size of its
own processor config (``preprocessor_config.json``: ``image_mean``, ``image_std``, ``size``,
``crop_size``) *inside* the model, through :class:`~leafscope.models.loading.ModelAdapter`:
inputs stay images in [0, 1] at the data's own size, so G is in pixel units of the data. A
sequence classifier comes back as a :class:`~leafscope.models.text.TextClassifier` with the
tokenizer saved beside it. The logits are selected from the output object (``output=logits``).

``timm:NAME`` builds ``timm.create_model(NAME, pretrained=...)`` (pretrained weights from the
local cache unless ``weights`` names a state_dict file; ``factory_kwargs`` go to
``create_model``, e.g. ``{"num_classes": 10}``), with timm's data config (mean, std, input
size) inside the model.

Every message names library parameters (``checkpoint``, ``weights``...), never CLI flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from leafscope.errors import CheckpointError, InputError

__all__ = [
    "HUB_PREFIXES",
    "HubRef",
    "hub_files",
    "is_hub_source",
    "load_hub_model",
    "parse_hub",
    "processor_settings",
    "require_extra",
]

#: Prefixes of model sources loaded by an optional library.
HUB_PREFIXES = ("hf:", "timm:")
#: The optional extra that provides each prefix's library.
EXTRAS = {"hf": ("transformers", "hf"), "timm": ("timm", "timm")}


def is_hub_source(text: Any) -> bool:
    """Whether ``text`` names a model by ``hf:`` or ``timm:``."""
    return isinstance(text, str) and text.lower().startswith(HUB_PREFIXES)


@dataclasses.dataclass(frozen=True)
class HubRef:
    """A parsed ``hf:`` / ``timm:`` source.

    Attributes:
        kind: ``"hf"`` or ``"timm"``.
        name: a local folder (absolute once :meth:`absolute` ran) or a hub id / timm name.
        revision: branch, tag or commit of a hub id (``hf:ID@REVISION``), or None.
    """

    kind: str
    name: str
    revision: str | None = None

    @property
    def local(self) -> bool:
        """A folder on disk (``save_pretrained``), not an id."""
        return self.kind == "hf" and Path(self.name).expanduser().is_dir()

    def absolute(self) -> HubRef:
        if self.local:
            return dataclasses.replace(self, name=str(Path(self.name).expanduser().resolve()))
        return self

    def text(self) -> str:
        """Back to ``kind:name[@revision]``."""
        tail = f"@{self.revision}" if self.revision else ""
        return f"{self.kind}:{self.name}{tail}"


def parse_hub(text: str) -> HubRef:
    """``hf:PATH_OR_ID[@REVISION]`` or ``timm:NAME`` → :class:`HubRef`.

    An existing folder is taken whole (even with an ``@`` in its name); otherwise a final
    ``@REVISION`` names the revision of a hub id.

    Raises:
        InputError: no prefix, or nothing after it.
    """
    if not is_hub_source(text):
        raise InputError(f"not a hub model source: {text!r} (use hf:PATH_OR_ID or timm:NAME)")
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    rest = rest.strip()
    if not rest:
        raise InputError(
            f"`checkpoint={text}` names no model: give hf:FOLDER, hf:OWNER/NAME[@REVISION] or "
            "timm:NAME"
        )
    revision = None
    if kind == "hf" and not Path(rest).expanduser().is_dir() and "@" in rest:
        rest, _, revision = rest.rpartition("@")
        if not rest or not revision:
            raise InputError(f"`checkpoint={text}`: write hf:OWNER/NAME@REVISION")
    if kind == "timm" and "@" in rest:
        raise InputError(
            f"`checkpoint={text}`: timm models have no revision; pass timm:NAME (and `weights` "
            "for a state_dict of your own)"
        )
    return HubRef(kind, rest, revision)


def require_extra(kind: str) -> Any:
    """Import the library behind ``kind`` (``hf`` → transformers, ``timm`` → timm).

    Raises:
        InputError: one line naming the extra to install and the import error.
    """
    module, extra = EXTRAS[kind]
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken install is reported in one line too
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise InputError(
            f"{kind}: models need the optional {module} package: pip install "
            f"'leafscope[{extra}]' ({type(exc).__name__}: {first})"
        ) from None


# ------------------------------------------------------------------------------- files (identity)
def _cached_folder(ref: HubRef) -> Path | None:
    """The local snapshot folder of a hub id (None when not cached or huggingface_hub is
    missing); read without network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(ref.name, "config.json", revision=ref.revision)
    except Exception:  # noqa: BLE001 - an id that is not a valid repo name: nothing cached
        return None
    return Path(found).parent if isinstance(found, (str, Path)) else None


def hub_files(ref: HubRef) -> dict[str, Path]:
    """The files whose contents define a ``hf:`` model (every file of its folder or cached
    snapshot, keyed ``hf/NAME``); ``{}`` for timm and uncached ids (then the name identifies
    the model)."""
    if ref.kind != "hf":
        return {}
    folder = Path(ref.name).expanduser() if ref.local else _cached_folder(ref)
    if folder is None or not folder.is_dir():
        return {}
    return {
        f"hf/{path.relative_to(folder).as_posix()}": path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


# ---------------------------------------------------------------------------- processor config
def _size_of(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, Mapping):
        if "height" in value and "width" in value:
            return (int(value["height"]), int(value["width"]))
        if "shortest_edge" in value:
            edge = int(value["shortest_edge"])
            return (edge, edge)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    return None


def processor_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """``mean``, ``std`` (None when the processor does not normalise) and ``size`` ``(H, W)``
    (None when unknown) of a Hugging Face image processor config, plus ``notes``.

    The size is ``crop_size`` when the processor centre-crops, else ``size`` (a
    ``shortest_edge`` becomes a square). Pixel values in [0, 1] equal the processor's
    ``rescale_factor = 1/255`` applied to bytes, so rescaling needs nothing inside the model.

    Examples:
        >>> processor_settings({"image_mean": [0.5] * 3, "image_std": [0.5] * 3,
        ...                     "size": {"height": 224, "width": 224}})["size"]
        (224, 224)
    """
    notes: list[str] = []
    mean = std = None
    if config.get("do_normalize", True) and config.get("image_mean") is not None:
        mean = tuple(float(v) for v in _as_list(config["image_mean"]))
        std = tuple(float(v) for v in _as_list(config.get("image_std", [1.0])))
    size = None
    if config.get("do_center_crop") and config.get("crop_size") is not None:
        size = _size_of(config["crop_size"])
    if size is None and config.get("do_resize", True):
        size = _size_of(config.get("size"))
        if isinstance(config.get("size"), Mapping) and "shortest_edge" in config["size"]:
            notes.append(
                f"the processor resizes the shortest edge to {size[0]}; inputs of another size "
                f"are resized to {size[0]}x{size[1]} inside the model"
            )
    if not config.get("do_rescale", True):
        notes.append("the processor does not rescale: the model saw raw values, not [0, 1]")
    return {"mean": mean, "std": std, "size": size, "notes": notes}


def _as_list(value: Any) -> Sequence[float]:
    return value if isinstance(value, (list, tuple)) else [value]


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path} as JSON ({exc})") from None


def _hub_file(ref: HubRef, filename: str) -> Path | None:
    """A file of the model's folder or hub snapshot (None when it has none)."""
    if ref.local:
        return Path(ref.name).expanduser() / filename
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    try:
        return Path(hf_hub_download(ref.name, filename, revision=ref.revision))
    except Exception:  # noqa: BLE001 - absent file, offline without a cached copy: no config
        return None


# ----------------------------------------------------------------------------------- loading
@contextlib.contextmanager
def _quiet_transformers(transformers: Any) -> Iterator[None]:
    """No weight-loading progress bars while loading (restored afterwards)."""
    logging = getattr(getattr(transformers, "utils", None), "logging", None)
    enabled = getattr(logging, "is_progress_bar_enabled", lambda: False)()
    if enabled:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def _hf_task(transformers: Any, config: Any, ref: HubRef) -> str:
    from transformers.models.auto import modeling_auto

    image = config.model_type in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    text = config.model_type in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    if image and text:
        processor = _read_json(_hub_file(ref, "preprocessor_config.json")) or {}
        return "image" if "image_mean" in processor or "size" in processor else "text"
    if image:
        return "image"
    if text:
        return "text"
    raise InputError(
        f"`checkpoint={ref.text()}` is a {config.model_type!r} model, neither an image "
        "classifier (AutoModelForImageClassification) nor a sequence classifier "
        "(AutoModelForSequenceClassification)"
    )


def _hf_error(ref: HubRef, exc: Exception) -> InputError:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    if ref.local:
        return InputError(
            f"`checkpoint={ref.text()}`: the folder does not hold a Hugging Face model "
            f"({type(exc).__name__}: {first}): save one with model.save_pretrained(FOLDER)"
        )
    return InputError(
        f"`checkpoint={ref.text()}` is neither a folder nor a model in the local Hugging Face "
        f"cache ({type(exc).__name__}: {first}): pass the folder of a save_pretrained model, "
        "or download the model once with network access"
    )


def _load_hf(ref: HubRef, kwargs: Mapping[str, Any]) -> tuple[nn.Module, str, Any]:
    """(model, task, tokenizer or processor settings) of a ``hf:`` source."""
    transformers = require_extra("hf")
    common: dict[str, Any] = {"revision": ref.revision} if ref.revision else {}
    if ref.local:
        common["local_files_only"] = True
    with _quiet_transformers(transformers):
        try:
            config = transformers.AutoConfig.from_pretrained(ref.name, **common)
        except (OSError, ValueError) as exc:
            raise _hf_error(ref, exc) from None
        task = _hf_task(transformers, config, ref)
        auto = (
            transformers.AutoModelForImageClassification
            if task == "image"
            else transformers.AutoModelForSequenceClassification
        )
        try:
            model = auto.from_pretrained(ref.name, **common, **kwargs)
        except TypeError as exc:
            raise InputError(
                f"`checkpoint={ref.text()}`: `factory_kwargs` {dict(kwargs)} are not arguments "
                f"of from_pretrained ({exc})"
            ) from None
        except (OSError, ValueError) as exc:
            raise _hf_error(ref, exc) from None
        if task == "text":
            try:
                extra = transformers.AutoTokenizer.from_pretrained(ref.name, **common)
            except (OSError, ValueError) as exc:
                raise InputError(
                    f"`checkpoint={ref.text()}` is a text classifier without a tokenizer "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}): save its "
                    "tokenizer beside it (tokenizer.save_pretrained(FOLDER))"
                ) from None
        else:
            extra = processor_settings(_read_json(_hub_file(ref, "preprocessor_config.json")) or {})
    return model, task, extra


def _load_timm(ref: HubRef, kwargs: Mapping[str, Any], weights: Any) -> tuple[nn.Module, dict]:
    timm = require_extra("timm")
    arguments = dict(kwargs)
    pretrained = bool(arguments.pop("pretrained", weights is None))
    try:
        model = timm.create_model(ref.name, pretrained=pretrained, **arguments)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(f"`checkpoint={ref.text()}`: timm cannot build it ({first})") from None
    except Exception as exc:  # noqa: BLE001 - no weights offline, bad arguments: one line
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        hint = (
            "pass `weights` (a state_dict file) or download the weights once with network access"
            if pretrained
            else "check `factory_kwargs`"
        )
        raise InputError(
            f"`checkpoint={ref.text()}`: timm.create_model failed ({type(exc).__name__}: "
            f"{first}): {hint}"
        ) from None
    data = timm.data.resolve_data_config({}, model=model)
    size = tuple(int(s) for s in data.get("input_size", ())[1:]) or None
    return model, {"mean": data.get("mean"), "std": data.get("std"), "size": size, "notes": []}


def load_hub_model(
    source: str,
    *,
    factory_kwargs: Mapping[str, Any] | None = None,
    weights: Any = None,
    normalize: Any = None,
    output: str | int | None = None,
) -> nn.Module:
    """Load a ``hf:`` / ``timm:`` model in eval mode on the CPU (see the module docstring).

    Args:
        source: ``hf:FOLDER``, ``hf:OWNER/NAME[@REVISION]`` or ``timm:NAME``.
        factory_kwargs: keyword arguments of ``from_pretrained`` / ``timm.create_model``.
        weights: a state_dict file or mapping loaded into the built model.
        normalize: replaces the processor's normalisation (images only).
        output: the logits in the output (default ``logits`` for ``hf:``).

    Returns:
        An image model wrapped in :class:`~leafscope.models.loading.ModelAdapter` (the
        processor's normalisation and size inside), or a
        :class:`~leafscope.models.text.TextClassifier`.
    """
    from leafscope.models.loading import ModelAdapter, load_weights, parse_normalize

    ref = parse_hub(source)
    kwargs = dict(factory_kwargs or {})
    notes: list[str] = []
    if ref.kind == "hf":
        model, task, extra = _load_hf(ref, kwargs)
    else:
        (model, extra), task = _load_timm(ref, kwargs, weights), "image"
    if weights is not None:
        load_weights(model, weights)
    if task == "text":
        from leafscope.models.text import TextClassifier

        if normalize is not None:
            raise InputError(
                f"`normalize` applies to images; `checkpoint={ref.text()}` is a text classifier"
            )
        return TextClassifier(model, extra, output=output or "logits", source=ref.text()).eval()
    preset = None
    mean, std = extra["mean"], extra["std"]
    if normalize is not None:
        mean, std = parse_normalize(normalize)
        preset = normalize.strip().lower() if isinstance(normalize, str) else None
        notes.append("`normalize` replaces the normalisation of the model's processor config")
    elif mean is None:
        notes.append(
            "no normalisation found in the model's processor config (none, or not in the "
            "folder / cache): inputs go in as [0, 1] pixels; pass `normalize` if the model "
            "was trained on normalised images"
        )
    else:
        notes.append(
            "normalisation of the model's processor config inside the model (mean "
            f"{_fmt(mean)}, std {_fmt(std)}): G is in [0, 1] pixel units"
        )
    if extra["size"] is not None:
        h, w = extra["size"]
        notes.append(f"inputs of another size are resized to {h}x{w} inside the model (bilinear)")
    notes.extend(extra["notes"])
    if model.training:
        notes.append("model was in training mode; put in eval mode")
    if ref.kind == "hf" and output is None:
        output = "logits"
    adapter = ModelAdapter(
        model, mean=mean, std=std, output=output, preset=preset, size=extra["size"]
    )
    adapter._notes.extend(notes)
    return adapter.eval()


def _fmt(values: Sequence[float] | None) -> str:
    return "none" if values is None else "(" + ", ".join(f"{v:g}" for v in values) + ")"
