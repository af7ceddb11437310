"""What a worker needs to rebuild a model and a data set, and a per-worker cache of them.

A task carries a :class:`ModelSpec` and a :class:`DataSpec` (a few strings) and the indices of
its points, never the model's tensors nor the images. Each worker process loads the model and
the data once (:func:`cached_model`, :func:`cached_data`) and keeps them for its next tasks; in
process, the command's own model and data are put in the same cache (:func:`put_cached`), so
nothing is loaded twice. On a remote cluster (``--scheduler``) the paths in the specs must be
readable by the workers (a shared file system).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from leafscope.errors import InputError

__all__ = [
    "SPLITS",
    "DataSpec",
    "ModelSpec",
    "PointSource",
    "cached",
    "cached_data",
    "cached_model",
    "clear_cache",
    "put_cached",
    "put_cached_data",
    "put_cached_model",
]

SPLITS = ("train", "test", "all")
CACHE_SIZE = 4  # loaded models / data sets a worker keeps

T = TypeVar("T")
_CACHE: OrderedDict[Hashable, Any] = OrderedDict()
_LOCK = threading.RLock()


def cached(key: Hashable, build: Callable[[], T]) -> T:
    """The value cached under ``key`` in this process, built with ``build()`` the first time
    (the last :data:`CACHE_SIZE` keys are kept; thread-safe)."""
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        value = build()
        put_cached(key, value)
        return value


def put_cached(key: Hashable, value: Any) -> None:
    """Store ``value`` under ``key`` (e.g. the model a command already loaded)."""
    with _LOCK:
        _CACHE[key] = value
        _CACHE.move_to_end(key)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)


def clear_cache() -> None:
    """Forget every cached model and data set of this process."""
    with _LOCK:
        _CACHE.clear()


@dataclass(frozen=True)
class ModelSpec:
    """The arguments of :func:`leafscope.models.load_model`, as hashable plain values.

    Attributes:
        checkpoint: checkpoint file, run folder or TorchScript file (or None with ``factory``).
        factory: ``MODULE:CALLABLE`` of a user model.
        factory_kwargs: the factory's keyword arguments as JSON text (``"{}"`` when none).
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

    def load(self, device: torch.device | str = "cpu") -> nn.Module:
        """The model in eval mode on ``device``."""
        from leafscope.models import load_model

        return load_model(
            self.checkpoint,
            factory=self.factory,
            factory_kwargs=json.loads(self.factory_kwargs),
            weights=self.weights,
            normalize=self.normalize,
            output=self.output,
            device=device,
        )

    def fingerprint(self) -> dict[str, Any]:
        """The spec plus the SHA-256 of its checkpoint and weights files (a folder or a missing
        file: its path only), so results of changed weights are never mixed."""
        from leafscope.data import file_digest

        record: dict[str, Any] = asdict(self)
        for name in ("checkpoint", "weights"):
            value = getattr(self, name)
            if value is not None and Path(value).is_file():
                record[f"{name}_sha256"] = file_digest(value)
        return record


class PointSource:
    """Points of one or more loaded data sets, addressed by one global index (``split="all"``:
    the train points, then the test points), without concatenating the image tensors.

    Args:
        parts: the loaded :class:`leafscope.data.ImageDataset` parts, in index order.
    """

    def __init__(self, parts: Sequence[Any]):
        if not parts:
            raise InputError("a point source needs at least one data set")
        self.parts = list(parts)
        self.offsets = [0]
        for part in self.parts:
            self.offsets.append(self.offsets[-1] + len(part))

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def first(self) -> Any:
        """The first part (for model/data checks and metadata)."""
        return self.parts[0]

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Images ``(n, *shape)`` and labels ``(n,)`` of the points ``indices``, in that order."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise InputError(
                f"indices span [{int(index.min())}, {int(index.max())}] but the data have "
                f"{len(self)} points: use indices in [0, {len(self) - 1}]"
            )
        first = self.parts[0]
        images = first.images.new_empty((index.numel(), *first.images.shape[1:]))
        labels = first.labels.new_empty(index.numel())
        for part, lo, hi in zip(self.parts, self.offsets[:-1], self.offsets[1:], strict=True):
            where = ((index >= lo) & (index < hi)).nonzero().flatten()
            if where.numel():
                images[where] = part.images[index[where] - lo]
                labels[where] = part.labels[index[where] - lo]
        return images, labels

    def describe(self) -> dict[str, Any]:
        """The first part's ``describe()``; with several parts, their splits joined by ``+``,
        the total point count and the summed class counts."""
        info = self.first.describe()
        if len(self.parts) > 1:
            info["split"] = "+".join(p.split for p in self.parts)
            info["num_points"] = len(self)
            counts = [p.describe()["class_counts"] for p in self.parts]
            if all(len(c) == len(counts[0]) for c in counts):
                info["class_counts"] = [sum(col) for col in zip(*counts, strict=True)]
            info["source"] = "; ".join(str(p.source) for p in self.parts)
        return info


@dataclass(frozen=True)
class DataSpec:
    """The arguments of :func:`leafscope.data.load_images`, as hashable plain values.

    Attributes:
        name: data set name or path.
        split: ``train``, ``test`` or ``all`` (train then test).
        data_dir: folder searched first for the files.
        grey: convert to one channel.
        resize: ``"H,W"``.
        label_column: label column of a CSV.
    """

    name: str = "mnist"
    split: str = "test"
    data_dir: str | None = None
    grey: bool = False
    resize: str | None = None
    label_column: str = "label"

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise InputError(f"unknown split {self.split!r}: use one of {', '.join(SPLITS)}")

    def load(self) -> PointSource:
        """Load the split(s) (no download when the files are present)."""
        from leafscope.data import load_images

        splits = ("train", "test") if self.split == "all" else (self.split,)
        return PointSource(
            [
                load_images(
                    self.name,
                    split,
                    data_dir=self.data_dir,
                    grey=self.grey,
                    resize=self.resize,
                    label_column=self.label_column,
                )
                for split in splits
            ]
        )

    def fingerprint(self) -> dict[str, Any]:
        """The spec without ``data_dir`` (the same files found elsewhere give the same data)."""
        record = asdict(self)
        record.pop("data_dir")
        return record


def _model_key(spec: ModelSpec, device: torch.device | str) -> tuple:
    return ("model", spec, str(torch.device(device)))


def cached_model(spec: ModelSpec, device: torch.device | str) -> nn.Module:
    """``spec.load(device)``, once per process and device."""
    return cached(_model_key(spec, device), lambda: spec.load(device))


def cached_data(spec: DataSpec) -> PointSource:
    """``spec.load()``, once per process."""
    return cached(("data", spec), spec.load)


def put_cached_model(spec: ModelSpec, device: torch.device | str, model: nn.Module) -> None:
    """Make ``cached_model(spec, device)`` return ``model`` (loaded already by the caller)."""
    put_cached(_model_key(spec, device), model)


def put_cached_data(spec: DataSpec, source: PointSource) -> None:
    """Make ``cached_data(spec)`` return ``source``."""
    put_cached(("data", spec), source)
