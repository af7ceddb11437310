"""The one model layer: a :class:`ModelSpec` (a few strings) loads to the model in eval mode.

Sources: a leafscope checkpoint or run folder (its newest checkpoint), a TorchScript file, or a
factory ``MODULE:CALLABLE`` (a module on the Python path or a ``.py`` file) with a state_dict.
The spec carries absolute paths and hashes the files' contents, so a worker anywhere loads the
same model and a result records exactly which one produced it.

Two identities: :meth:`ModelSpec.fingerprint` is the spec's fields (paths included, so a spec can
be rebuilt from it) plus the SHA-256 of each file, so it changes when a file's contents change
*and* when the same file is given from another path; :meth:`ModelSpec.content_key` hashes the
contents and options only, so a copy of the files elsewhere gives the same key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leafscope.errors import InputError

__all__ = ["ModelSpec", "file_sha256"]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _absolute_factory(factory: str | None) -> str | None:
    """``path/to/file.py:F`` with the file made absolute; ``package.module:F`` unchanged."""
    if factory is None:
        return None
    module, sep, name = factory.rpartition(":")
    if sep and module.endswith(".py"):
        return f"{_absolute(module)}:{name}"
    return factory


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A model as plain values: the arguments of :func:`leafscope.models.load_model`.

    Attributes:
        checkpoint: checkpoint file, run folder or TorchScript file (or None with ``factory``);
            or a model by path or id, ``hf:FOLDER``, ``hf:OWNER/NAME[@REVISION]`` or
            ``timm:NAME`` (a ``factory`` with one of these prefixes moves here).
        factory: ``MODULE:CALLABLE`` of a user model (``path/file.py:CALLABLE`` works).
        factory_kwargs: the factory's keyword arguments as JSON text (``"{}"`` when none); for
            ``hf:`` / ``timm:`` the arguments of ``from_pretrained`` / ``timm.create_model``.
        weights: a state_dict file loaded into the model.
        normalize: ``"MEAN:STD"`` or a preset name, applied inside the model.
        output: key or index of the logits in a structured output.
    """

    checkpoint: str | None = None
    factory: str | None = None
    factory_kwargs: str = "{}"
    weights: str | None = None
    normalize: str | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        from leafscope.models.hub import is_hub_source

        if self.checkpoint is None and is_hub_source(self.factory):
            # ``hf:`` / ``timm:`` name a model, not a MODULE:CALLABLE: one place for them
            object.__setattr__(self, "checkpoint", self.factory)
            object.__setattr__(self, "factory", None)
        if (self.checkpoint is None) == (self.factory is None):
            raise InputError(
                "a model needs exactly one source: a `checkpoint` (leafscope .pt, run folder or "
                "TorchScript file) or a `factory` MODULE:CALLABLE (with `weights`)"
            )
        try:
            kwargs = json.loads(self.factory_kwargs)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"`factory_kwargs` must be a JSON object (got {self.factory_kwargs!r}: {exc})"
            ) from exc
        if not isinstance(kwargs, dict):
            raise InputError(
                f'`factory_kwargs` must be a JSON object like {{"depth": 18}} '
                f"(got {self.factory_kwargs!r})"
            )
        if kwargs and self.factory is None and not is_hub_source(self.checkpoint):
            raise InputError(
                "`factory_kwargs` are the keyword arguments of a `factory` MODULE:CALLABLE: "
                "name one"
            )

    def absolute(self) -> ModelSpec:
        """The spec with every path absolute (what is sent to workers)."""
        from leafscope.models.hub import is_hub_source, parse_hub

        checkpoint = self.checkpoint
        if is_hub_source(checkpoint):
            checkpoint = parse_hub(checkpoint).absolute().text()
        else:
            checkpoint = _absolute(checkpoint)
        return dataclasses.replace(
            self,
            checkpoint=checkpoint,
            factory=_absolute_factory(self.factory),
            weights=_absolute(self.weights),
        )

    def load(self, device: torch.device | str = "cpu") -> nn.Module:
        """The model in eval mode on ``device``, by :func:`leafscope.models.load_model` (the one
        loader); :func:`leafscope.models.loading.load_notes` tells what loading changed."""
        from leafscope.models.loading import load_model

        return load_model(self, device=device)

    def files(self) -> dict[str, Path]:
        """The files whose contents define the model (checkpoint, weights, factory file)."""
        from leafscope.models.hub import hub_files, is_hub_source, parse_hub

        out: dict[str, Path] = {}
        if is_hub_source(self.checkpoint):
            out.update(hub_files(parse_hub(self.checkpoint)))
        for name in ("checkpoint", "weights"):
            value = getattr(self, name)
            if value is not None and not (name == "checkpoint" and is_hub_source(value)):
                path = Path(value)
                if path.is_dir():
                    from leafscope.models.checkpoint import select_checkpoint

                    path = select_checkpoint(path)
                if path is not None and path.is_file():
                    out[name] = path
        if self.factory is not None:
            module = self.factory.rpartition(":")[0]
            if module.endswith(".py") and Path(module).is_file():
                out["factory_file"] = Path(module)
        return out

    def fingerprint(self) -> dict[str, Any]:
        """The spec's fields plus ``checkpoint_sha256``, ``weights_sha256``,
        ``factory_file_sha256`` (SHA-256 of each file that defines the model), so results of
        changed weights are never mixed with others.

        The fields include the paths (``ModelSpec(**{f: record[f] ...})`` rebuilds the spec), so
        the same files copied elsewhere give a fingerprint with other paths and equal hashes;
        compare :meth:`content_key` to ignore where the files are.
        """
        record: dict[str, Any] = dataclasses.asdict(self)
        for name, path in self.files().items():
            record[f"{name}_sha256"] = file_sha256(path)
        return record

    def content_key(self) -> str:
        """A short hash (16 hex digits) of what the model is, not where its files are: the
        files' SHA-256, the factory's callable name and arguments, ``normalize`` and
        ``output``. Equal for a copy of the files elsewhere; different when a file changes."""
        from leafscope.models.hub import is_hub_source, parse_hub

        record = self.fingerprint()
        for name in ("checkpoint", "weights"):
            record.pop(name)
        if is_hub_source(self.checkpoint):
            ref = parse_hub(self.checkpoint)
            # a folder is its files' hashes; an id (and its revision) names the model itself
            record["hub"] = ref.kind if ref.local else ref.text()
        if self.factory is not None:
            module, _, attr = self.factory.rpartition(":")
            record["factory"] = attr if module.endswith(".py") else self.factory
        record["factory_kwargs"] = json.loads(self.factory_kwargs)
        text = json.dumps(record, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line naming the model's source and options."""
        parts = [self.checkpoint if self.checkpoint is not None else str(self.factory)]
        if self.factory_kwargs != "{}":
            parts.append(f"args {self.factory_kwargs}")
        for name in ("weights", "normalize", "output"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name} {value}")
        return ", ".join(parts)
