"""Lazy point sets: each keeps its points in their compact stored form and decodes only the
points :meth:`~leafscope.data.PointSet.take` asks for.

- :class:`ArrayPointSet`: an array or memory map at its raw dtype (uint8 stays uint8), converted
  to float32 a batch at a time by the rules of :func:`leafscope.data.to_data`.
- :class:`NoisePointSet`: uniform [0, 1) noise, point ``i`` drawn from its own seed.
- :class:`DatasetPointSet`: any ``torch.utils.data.Dataset`` (items ``(x, y)`` or ``x``).
- :class:`ConcatPointSet` (``split="all"``: train then test), :class:`SubsetPointSet` (a
  holdout split) and :class:`TransformedPointSet` (grey / resize per batch) wrap other sets.

Image folders are :class:`leafscope.data.user.FolderPointSet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leafscope.data.dataset import ImageDataset, to_data, to_unit_images
from leafscope.data.spec import PointSet
from leafscope.data.transforms import transform_batch, transform_plan
from leafscope.errors import InputError

__all__ = [
    "ArrayPointSet",
    "ConcatPointSet",
    "DatasetPointSet",
    "NoisePointSet",
    "SubsetPointSet",
    "TransformedPointSet",
    "as_point_set",
    "gather",
]

NOISE_NORMALIZATION = "uniform noise in [0,1), no mean/std normalisation"


def gather(raw: Any, index: np.ndarray) -> np.ndarray:
    """``raw[index]`` (rows), read as one slice when ``index`` is a contiguous ascending run
    (cheap on a memory map), else by fancy indexing; a plain ndarray either way."""
    if index.size and int(index[-1]) - int(index[0]) + 1 == index.size:
        if index.size == 1 or bool(np.all(np.diff(index) == 1)):
            return np.asarray(raw[int(index[0]) : int(index[-1]) + 1])
    return np.asarray(raw[index])


def _empty(shape: tuple[int, ...]) -> Tensor:
    return torch.empty((0, *shape), dtype=torch.float32)


class ArrayPointSet(PointSet):
    """Points of an array-like ``raw`` ((N, ...), a numpy array or a memory map at its stored
    dtype), converted to float32 a batch at a time.

    Args:
        raw: the points as stored: (N, D) vectors, (N, H, W), (N, C, H, W) or (N, H, W, C)
            images; anything indexable by a slice or an int array that gives numpy arrays.
        labels: int64 (N,) (-1 unlabelled).
        name, split, source: recorded in :meth:`describe`.
        num_classes: number of classes.
        class_names: names of the classes, index = label.
        layout: channel axis of 4-D ``raw``: ``auto``, ``nchw`` or ``nhwc``.
        normalization: how the values became these floats (default: said by the conversion).
        transforms: steps already applied to ``raw`` (recorded only).
        ready: ``raw`` already holds float32 points at their final shape (no conversion).

    Raises:
        InputError: the first point cannot be converted (shape, layout, values); a later point
            that cannot is reported by the ``take`` that reads it, naming its index.
    """

    def __init__(
        self,
        raw: Any,
        labels: Tensor,
        *,
        name: str,
        split: str,
        source: str,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        layout: str = "auto",
        normalization: str | None = None,
        transforms: Sequence[str] = (),
        ready: bool = False,
    ):
        self.raw = raw
        self._labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if len(self._labels) != len(raw):
            raise InputError(f"{source}: {len(self._labels)} labels for {len(raw)} points")
        self.name, self.split, self.source = name, split, source
        self.num_classes = int(num_classes)
        self.class_names = None if class_names is None else list(class_names)
        self.layout = layout
        self.ready = ready
        self.transforms = tuple(transforms)
        if ready:
            self.input_shape = tuple(int(s) for s in raw.shape[1:])
            self.normalization = normalization or ""
        else:
            first, note = to_data(gather(raw, np.arange(min(1, len(raw)))), source, layout)
            self.input_shape = tuple(int(s) for s in first.shape[1:])
            self.normalization = normalization or note

    def __len__(self) -> int:
        return int(len(self.raw))

    @property
    def labels(self) -> Tensor:
        return self._labels

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        index = self.check_indices(indices)
        if not index.numel():
            return _empty(self.input_shape), self._labels[index]
        rows = index.numpy()
        batch = gather(self.raw, rows)
        if self.ready:
            return torch.from_numpy(np.array(batch, dtype=np.float32)), self._labels[index]
        return self._convert(batch, rows), self._labels[index]

    def _convert(self, batch: np.ndarray, rows: np.ndarray) -> Tensor:
        try:
            return to_data(batch, self.source, self.layout)[0]
        except InputError:
            for j, i in enumerate(rows.tolist()):  # name the first point that fails
                try:
                    to_data(batch[j : j + 1], f"{self.source} point {i}", self.layout)
                except InputError as exc:
                    text = str(exc)
                    for what in ("image", "vector"):
                        text = text.replace(f": {what} 0 contains", " contains")
                    raise InputError(text) from None
            raise


class NoisePointSet(PointSet):
    """Uniform [0, 1) noise points of ``shape``; point ``i`` is drawn by its own generator,
    ``numpy.random.default_rng([seed, stream, i])``, so it does not depend on which other
    points are taken. Labels are all -1.

    Args:
        n: number of points.
        shape: point shape, e.g. ``(1, 28, 28)`` or a model's input shape.
        seed: seed (any integer).
        split: recorded; ``stream`` tells the splits apart (0 train, 1 test).
    """

    def __init__(self, n: int, shape: Sequence[int], *, seed: int, split: str, stream: int = 0):
        self.n = int(n)
        self.input_shape = tuple(int(s) for s in shape)
        self.seed, self.stream = int(seed), int(stream)
        self.name, self.split = "noise", split
        self.num_classes = 0
        self.normalization = NOISE_NORMALIZATION
        shape_text = "x".join(str(s) for s in self.input_shape)
        self.source = (
            f"uniform [0,1) points of shape {shape_text}, numpy default_rng([seed, {stream}, "
            f"index]), seed {seed}"
        )
        self._labels = torch.full((self.n,), -1, dtype=torch.int64)

    def __len__(self) -> int:
        return self.n

    @property
    def labels(self) -> Tensor:
        return self._labels

    def point(self, i: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed % 2**63, self.stream, int(i)])
        return rng.random(self.input_shape, dtype=np.float32)

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        index = self.check_indices(indices)
        out = np.empty((index.numel(), *self.input_shape), dtype=np.float32)
        for j, i in enumerate(index.tolist()):
            out[j] = self.point(i)
        return torch.from_numpy(out), self._labels[index]


class ConcatPointSet(PointSet):
    """Several point sets one after the other (``split="all"``: train, then test).

    Raises:
        InputError: the parts' points have different shapes.
    """

    def __init__(self, parts: Sequence[PointSet], split: str = "all"):
        if not parts:
            raise InputError("a point set needs at least one part")
        self.parts = list(parts)
        first = self.parts[0]
        for part in self.parts[1:]:
            if tuple(part.input_shape) != tuple(first.input_shape):
                raise InputError(
                    f"{first.name}: the {first.split} points have shape {first.input_shape} but "
                    f"the {part.split} points {part.input_shape}: resize them to one size "
                    "(resize H,W) or use one split"
                )
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.name, self.split = first.name, split
        self.input_shape = first.input_shape
        self.num_classes = max(p.num_classes for p in self.parts)
        self.class_names = next((p.class_names for p in self.parts if p.class_names), None)
        self.normalization = " | ".join(dict.fromkeys(p.normalization for p in self.parts))
        self.source = "; ".join(dict.fromkeys(p.source for p in self.parts))
        self.transforms = tuple(dict.fromkeys(t for p in self.parts for t in p.transforms))
        self._labels = torch.cat([p.labels for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def labels(self) -> Tensor:
        return self._labels

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        index = self.check_indices(indices)
        out = torch.empty((index.numel(), *self.input_shape), dtype=torch.float32)
        for part, lo, hi in zip(self.parts, self.offsets[:-1], self.offsets[1:], strict=True):
            where = ((index >= int(lo)) & (index < int(hi))).nonzero().flatten()
            if where.numel():
                out[where] = part.take(index[where] - int(lo))[0]
        return out, self._labels[index]


class SubsetPointSet(PointSet):
    """The points ``indices`` of ``base`` (e.g. the held-out ``test`` part of a set), in the
    order given; ``note`` is appended to the source."""

    def __init__(self, base: PointSet, indices: Sequence[int], *, split: str, note: str = ""):
        self.base = base
        self.index = base.check_indices(indices)
        self.name, self.split = base.name, split
        self.input_shape = base.input_shape
        self.num_classes = base.num_classes
        self.class_names = base.class_names
        self.normalization = base.normalization
        self.transforms = tuple(base.transforms)
        self.source = f"{base.source} ({note})" if note else base.source
        self._labels = base.labels[self.index]

    def __len__(self) -> int:
        return int(self.index.numel())

    @property
    def is_text(self) -> bool:
        return self.base.is_text

    @property
    def labels(self) -> Tensor:
        return self._labels

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        index = self.check_indices(indices)
        return self.base.take(self.index[index])[0], self._labels[index]


class TransformedPointSet(PointSet):
    """``base`` converted to grey and / or resized a batch at a time (each step recorded in
    ``transforms`` as :func:`leafscope.data.apply_transforms` records it).

    Raises:
        InputError: ``base`` holds vectors, grey of more than 4 channels, or a bad size.
    """

    def __init__(self, base: PointSet, *, grey: bool = False, size: Any = None):
        self.base = base
        self.grey, self.size = bool(grey), size
        self.input_shape, notes = transform_plan(
            base.input_shape, grey=grey, size=size, name=base.name
        )
        self.name, self.split = base.name, base.split
        self.class_names = base.class_names
        self.normalization = base.normalization
        self.source = base.source
        self.transforms = (*base.transforms, *notes)

    def __len__(self) -> int:
        return len(self.base)

    @property
    def labels(self) -> Tensor:
        return self.base.labels

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.base.num_classes

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        x, y = self.base.take(indices)
        if not len(x):
            return _empty(self.input_shape), y
        return transform_batch(x, grey=self.grey, size=self.size), y


def as_point_set(data: ImageDataset) -> ArrayPointSet:
    """A loaded :class:`~leafscope.data.ImageDataset` as a point set (its tensors shared)."""
    return ArrayPointSet(
        data.images.numpy(), data.labels, name=data.name, split=data.split, source=data.source,
        num_classes=data.num_classes, class_names=data.class_names,
        normalization=data.normalization, transforms=data.transforms, ready=True,
    )  # fmt: skip


# --- any torch Dataset ---------------------------------------------------------------------


def _item_parts(item: Any) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)):
        if not item:
            raise InputError("the dataset returned an empty item: return (x, y) or x")
        return item[0], item[1] if len(item) > 1 else None
    return item, None


def _item_array(x: Any, i: int) -> tuple[np.ndarray, str]:
    """One item as float32 (C, H, W) / (D,) and how its values were obtained."""
    if hasattr(x, "mode") and hasattr(x, "getbands"):  # a PIL image
        from leafscope.data.user import pil_array

        array, _ = pil_array(x)
        images, note = to_unit_images(array[None], source=f"dataset item {i}", layout="nhwc")
        return images[0].numpy(), note
    array = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if array.ndim == 2:
        array = array[None]
    if array.ndim not in (1, 3):
        raise InputError(
            f"dataset item {i} has shape {array.shape}: expected (C, H, W) or (H, W) images or "
            "(D,) vectors"
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255), "uint8 pixels/255"
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"dataset item {i} has dtype {array.dtype}: return numbers")
    return array.astype(np.float32), "values as the dataset returns them, as float32"


def _item_label(y: Any, i: int) -> int:
    if y is None:
        return -1
    try:
        value = y.item() if hasattr(y, "item") else y
        label = int(value)
        if label != value:
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(
            f"dataset item {i} has label {y!r}: labels must be integers >= 0 (-1 = unlabelled)"
        ) from None
    if label < -1:
        raise InputError(f"dataset item {i} has label {label}: labels must be >= -1")
    return label


class DatasetPointSet(PointSet):
    """Any ``torch.utils.data.Dataset`` (``len`` and ``[i]``) as a point set, for use in process.

    Items are ``(x, y)`` (more entries are ignored) or ``x`` alone (unlabelled). ``x`` is a
    tensor or array, (C, H, W) or (H, W) images or (D,) vectors, or a PIL image; uint8 (and
    PIL) values are divided by 255, any other numbers are kept as float32 (so normalise inside
    the model, not in the dataset, to measure G in pixel units). ``take`` reads only the items
    asked for.

    Labels come from ``labels``, else the dataset's ``targets`` (torchvision) or ``labels``
    attribute, else from reading every item once, the first time :attr:`labels` is used.

    Args:
        dataset: the dataset.
        name: recorded name (default: the dataset's class name).
        split: recorded split.
        labels: int labels (N,) (-1 unlabelled), to avoid reading the items for them.
        num_classes: number of classes (default: largest label + 1).
        class_names: names of the classes (default: the dataset's ``classes``, if any).

    Examples:
        >>> from torch.utils.data import TensorDataset
        >>> ps = DatasetPointSet(TensorDataset(torch.rand(5, 1, 4, 4), torch.arange(5) % 2))
        >>> ps.take([1, 3])[0].shape, ps.labels.tolist()
        (torch.Size([2, 1, 4, 4]), [0, 1, 0, 1, 0])
    """

    def __init__(
        self,
        dataset: Any,
        *,
        name: str | None = None,
        split: str = "all",
        labels: Any = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ):
        try:
            n = len(dataset)
        except TypeError:
            raise InputError(
                f"{type(dataset).__name__} has no len(): give a map-style dataset (len and [i])"
            ) from None
        if n < 1:
            raise InputError(f"{type(dataset).__name__} is empty: give a dataset with points")
        self.dataset = dataset
        self.n = int(n)
        self.name = name or type(dataset).__name__
        self.split = split
        first, self.normalization = _item_array(_item_parts(dataset[0])[0], 0)
        self.input_shape = tuple(int(s) for s in first.shape)
        self.source = f"{type(dataset).__name__} ({self.n} items, read one at a time)"
        names = class_names if class_names is not None else getattr(dataset, "classes", None)
        self.class_names = [str(c) for c in names] if isinstance(names, Sequence) else None
        self._num_classes = num_classes
        self._labels: Tensor | None = None
        if labels is None:
            for attr in ("targets", "labels"):
                found = getattr(dataset, attr, None)
                if found is not None and not callable(found) and len(found) == self.n:
                    labels = found
                    break
        if labels is not None:
            self._labels = self._check_labels(labels)

    def _check_labels(self, labels: Any) -> Tensor:
        y = torch.as_tensor(np.asarray(labels)).reshape(-1)
        if y.numel() != self.n or y.is_floating_point() or (y.numel() and int(y.min()) < -1):
            raise InputError(
                f"labels of {self.name} must be {self.n} integers >= -1 (got shape "
                f"{tuple(y.shape)}, dtype {y.dtype})"
            )
        return y.long()

    def __len__(self) -> int:
        return self.n

    @property
    def labels(self) -> Tensor:
        if self._labels is None:
            self._labels = torch.tensor(
                [_item_label(_item_parts(self.dataset[i])[1], i) for i in range(self.n)],
                dtype=torch.int64,
            )
        return self._labels

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        if self._num_classes is not None:
            return int(self._num_classes)
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if self.n else 0

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        index = self.check_indices(indices)
        out = np.empty((index.numel(), *self.input_shape), dtype=np.float32)
        labels = []
        for j, i in enumerate(index.tolist()):
            x, y = _item_parts(self.dataset[i])
            array, _ = _item_array(x, i)
            if array.shape != self.input_shape:
                raise InputError(
                    f"dataset item {i} has shape {array.shape} but item 0 has "
                    f"{self.input_shape}: return points of one shape"
                )
            out[j] = array
            labels.append(_item_label(y, i))
        if self._labels is not None:
            return torch.from_numpy(out), self._labels[index]
        return torch.from_numpy(out), torch.tensor(labels, dtype=torch.int64)
