"""The one data layer: a :class:`DataSpec` (a few strings) opens to a :class:`PointSet`, an
indexable set that decodes only the points asked for.

Every task reads its data through :meth:`PointSet.take`; the runner ships the spec (absolute
paths) to the workers, which open the same set. :func:`select_points` is the one point
selection: a seeded sample stratified by label, or exact indices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leafscope.errors import InputError

__all__ = ["SPLITS", "DataSpec", "PointSet", "TensorPointSet", "select_points"]

SPLITS = ("train", "test", "all")


class PointSet:
    """Points addressed by index ``0..len-1``, decoded on demand.

    Subclasses implement ``__len__``, :attr:`labels` (cheap: no decoding) and :meth:`take`;
    ``input_shape``, ``num_classes``, ``normalization``, ``source`` and ``transforms`` are
    attributes, from which :meth:`describe` is made. The implementations live in
    :mod:`leafscope.data.pointsets` (arrays, memory maps, image folders, generated noise, any
    ``torch.utils.data.Dataset``).
    """

    name: str = ""
    split: str = ""
    input_shape: tuple[int, ...] = ()
    num_classes: int = 0
    normalization: str = ""
    class_names: list[str] | None = None
    source: str = ""
    transforms: tuple[str, ...] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def labels(self) -> Tensor:
        """int64 ``(N,)``, -1 unlabelled (read without decoding the points)."""
        raise NotImplementedError

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def is_text(self) -> bool:
        """Texts (:class:`leafscope.data.text.TextPointSet`): ``take`` gives a
        :class:`~leafscope.data.text.TextBatch` of strings, which the model tokenises."""
        return False

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Points ``(n, *input_shape)`` float32 and labels ``(n,)`` of ``indices``, in order."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-able metadata (name, split, shape, class counts, provenance); the keys of
        :meth:`leafscope.data.ImageDataset.describe`."""
        labels = self.labels
        labelled = labels[labels >= 0]
        counts = (
            torch.bincount(labelled, minlength=self.num_classes).tolist()
            if labelled.numel()
            else []
        )
        shape = [int(s) for s in self.input_shape]
        return {
            "name": self.name,
            "split": self.split,
            "num_points": len(self),
            "kind": "images" if self.is_image else "vectors",
            "input_shape": shape,
            "image_shape": shape if self.is_image else None,
            "num_classes": self.num_classes,
            "labelled": bool(labelled.numel() == len(self)),
            "class_counts": counts,
            "normalization": self.normalization,
            "transforms": list(self.transforms),
            "source": self.source,
            "class_names": None if self.class_names is None else list(self.class_names),
        }

    def check_indices(self, indices: Sequence[int]) -> Tensor:
        """``indices`` as an int64 tensor, checked against ``0..len-1``."""
        if isinstance(indices, range) and indices.step == 1:
            index = torch.arange(indices.start, indices.stop, dtype=torch.long)
        elif torch.is_tensor(indices) or isinstance(indices, np.ndarray):
            index = torch.as_tensor(indices).reshape(-1)
            if index.is_floating_point() or index.dtype == torch.bool:
                raise InputError(f"indices must be integers (got dtype {index.dtype})")
            index = index.long()
        else:
            index = torch.as_tensor(list(indices), dtype=torch.long).reshape(-1)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise InputError(
                f"indices span [{int(index.min())}, {int(index.max())}] but {self.name} has "
                f"{len(self)} points: use indices in [0, {len(self) - 1}]"
            )
        return index

    def dataset(self, indices: Sequence[int] | None = None) -> Any:
        """The points ``indices`` (default: all) as a :class:`leafscope.data.ImageDataset`, for
        algorithms that take tensors (decodes those points only)."""
        from leafscope.data.dataset import ImageDataset

        indices = range(len(self)) if indices is None else indices
        x, y = self.take(list(indices))
        return ImageDataset(
            x, y, self.name, self.split, self.num_classes, self.normalization,
            source=str(self.describe().get("source", "")), class_names=self.class_names,
            transforms=list(self.describe().get("transforms", [])),
        )  # fmt: skip


class TensorPointSet(PointSet):
    """A point set over loaded :class:`leafscope.data.ImageDataset` parts (``split="all"``:
    the train points, then the test points), without concatenating their tensors."""

    def __init__(self, parts: Sequence[Any]):
        if not parts:
            raise InputError("a point set needs at least one data set")
        self.parts = list(parts)
        first = self.parts[0]
        self.offsets = [0]
        for part in self.parts:
            self.offsets.append(self.offsets[-1] + len(part))
        self.name = first.name
        self.split = "+".join(p.split for p in self.parts)
        self.input_shape = first.input_shape
        self.num_classes = max(p.num_classes for p in self.parts)
        self.normalization = first.normalization
        self.class_names = first.class_names
        self._labels = torch.cat([p.labels for p in self.parts])

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def labels(self) -> Tensor:
        return self._labels

    def take(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        index = self.check_indices(indices)
        first = self.parts[0]
        images = first.images.new_empty((index.numel(), *first.images.shape[1:]))
        for part, lo, hi in zip(self.parts, self.offsets[:-1], self.offsets[1:], strict=True):
            where = ((index >= lo) & (index < hi)).nonzero().flatten()
            if where.numel():
                images[where] = part.images[index[where] - lo]
        return images, self._labels[index]

    def describe(self) -> dict[str, Any]:
        info = self.parts[0].describe()
        if len(self.parts) > 1:
            info["split"] = self.split
            info["num_points"] = len(self)
            counts = [p.describe()["class_counts"] for p in self.parts]
            if all(len(c) == len(counts[0]) for c in counts):
                info["class_counts"] = [sum(col) for col in zip(*counts, strict=True)]
            info["source"] = "; ".join(str(p.source) for p in self.parts)
        return info


def _absolute(name: str) -> str:
    """``name`` with a path part made absolute (``npz:rel.npz`` too); set names unchanged."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in ("npz", "npy", "csv", "folder", "idx") and rest:
        return f"{prefix}:{Path(rest).expanduser().resolve()}"
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")) or "/" in name:
        return str(path.resolve())
    return name


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSpec:
    """A data set as a few plain values: what a worker needs to open the same points.

    Attributes:
        name: a built-in set name (``mnist``, ``cifar10``, ``noise``...) or a path (.npz, .npy,
            .csv, image folder, IDX file); paths are made absolute by :meth:`absolute`.
        split: ``train``, ``test`` or ``all`` (train then test; a set without a split is whole).
        data_dir: folder searched first for the files of built-in sets.
        grey: convert images to one channel (ITU-R 601 luma).
        resize: ``"H,W"``: resize images bilinearly.
        label_column: label column of a CSV (``"none"``: unlabelled).
        holdout: fraction in (0, 1) of a set without a split held out as its ``test`` split
            (seeded by ``seed``); the rest is ``train``.
        seed: seed of the holdout split and of generated sets.
        input_shape: point shape of a generated set (``noise``), e.g. the model's input shape.
        text_column: the column / key holding the texts of a ``.csv`` / ``.jsonl`` file of texts
            (None: ``text``; a ``.csv`` with a ``text`` column is read as texts, ``.jsonl`` and
            ``.txt`` always are).
        needed_for: why a task needs this very split (set by :meth:`with_split`); it changes
            only the refusal of a set without a split, not the points (nor the fingerprint).

    A set without a train/test split of its own (an image folder without ``train`` / ``test``
    sub-folders, an npz without ``x_train`` / ``x_test``, .npy, .csv, one IDX file) is used whole
    with ``split="all"``; its ``train`` / ``test`` exist only with ``holdout``.
    """

    name: str = "mnist"
    split: str = "test"
    data_dir: str | None = None
    grey: bool = False
    resize: str | None = None
    label_column: str = "label"
    holdout: float | None = None
    seed: int = 0
    input_shape: tuple[int, ...] | None = None
    text_column: str | None = None
    needed_for: str | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise InputError(f"unknown split {self.split!r}: use one of {', '.join(SPLITS)}")
        if self.holdout is not None and not 0.0 < float(self.holdout) < 1.0:
            raise InputError(f"holdout must lie in (0, 1), e.g. 0.25 (got {self.holdout!r})")
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if not shape or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape
            ):
                raise InputError(
                    f"input_shape must be positive integers, e.g. (1, 28, 28) (got "
                    f"{self.input_shape!r})"
                )
            object.__setattr__(self, "input_shape", shape)

    def absolute(self) -> DataSpec:
        """The spec with every path absolute (what is sent to workers)."""
        data_dir = self.data_dir
        if data_dir is not None:
            data_dir = str(Path(data_dir).expanduser().resolve())
        return dataclasses.replace(self, name=_absolute(self.name), data_dir=data_dir)

    def replace(self, **changes: Any) -> DataSpec:
        return dataclasses.replace(self, **changes)

    def open(self) -> PointSet:
        """The point set, decoded a batch at a time by ``take`` (see
        :func:`leafscope.data.open_points`).

        Raises:
            InputError: ``train`` / ``test`` of a set without a split and without ``holdout``,
                ``holdout`` of a set with its own split, unusable data or options.
            DataFileError: missing, corrupt or undecodable files.
        """
        from leafscope.data.sets import open_points

        return open_points(
            self.name,
            self.split,
            data_dir=self.data_dir,
            grey=self.grey,
            resize=self.resize,
            label_column=self.label_column,
            holdout=self.holdout,
            seed=self.seed,
            input_shape=self.input_shape,
            text_column=self.text_column,
            needed_for=self.needed_for,
        )

    def has_split(self) -> bool:
        """Whether the set has its own train/test split (read without opening it); without
        one, ``train`` / ``test`` need ``holdout``."""
        from leafscope.data.sets import has_split

        return has_split(self.name, self.data_dir, self.text_column)

    def with_split(self, split: str, *, purpose: str) -> DataSpec:
        """This spec with ``split``, for a task that needs that very split: ``purpose`` says
        why (e.g. "ood fits its detectors on the train split"). Opening it refuses a set
        without a split of its own and without ``holdout`` naming the one fix that applies
        (the whole set, ``split=all``, cannot serve as a train or test split)."""
        return self.replace(split=split, needed_for=purpose)

    def fingerprint(self) -> dict[str, Any]:
        """The spec without ``data_dir`` (the same files found elsewhere give the same data),
        plus the size and modification time of a user file (so changed data are noticed)."""
        record = dataclasses.asdict(self)
        record.pop("data_dir")
        record.pop("needed_for")  # a message, not the points
        if record["text_column"] is None:  # fingerprints of image / vector sets as before
            record.pop("text_column")
        if record["input_shape"] is not None:
            record["input_shape"] = list(record["input_shape"])
        name = self.name.partition(":")[2] if ":" in self.name else self.name
        path = Path(name)
        if path.is_file():
            stat = path.stat()
            record["file"] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        return record

    def key(self) -> str:
        """A short stable hash of :meth:`fingerprint`."""
        text = json.dumps(self.fingerprint(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def select_points(
    labels: Tensor | np.ndarray,
    *,
    points: int | None = None,
    indices: Sequence[int] | None = None,
    seed: int = 0,
) -> list[int]:
    """The one point selection: exact ``indices``, or ``points`` drawn without replacement by a
    seeded sample stratified by label (classes in proportion to their counts, each class that
    fits at least once), returned in increasing order; ``points=None``: every point.

    Args:
        labels: int labels ``(N,)`` (-1 unlabelled: drawn as one group).
        points: how many points (``<= N``).
        indices: exact indices instead (checked against ``N``).
        seed: sampling seed.

    Examples:
        >>> select_points(torch.tensor([0] * 6 + [1] * 6), points=4)
        [3, 4, 7, 11]
    """
    y = np.asarray(labels).reshape(-1)
    n = int(y.size)
    if indices is not None:
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < n]
        if not idx or bad:
            raise InputError(f"indices {bad or list(indices)} out of range: the set has points "
                             f"0..{n - 1}")  # fmt: skip
        return idx
    if points is None:
        return list(range(n))
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise InputError(f"points must be an integer >= 1 (got {points!r})")
    if points > n:
        raise InputError(f"points {points} exceeds the {n} points of the set")
    if points == n:
        return list(range(n))
    rng = np.random.default_rng(int(seed))
    classes, counts = np.unique(y, return_counts=True)
    # largest-remainder allocation, at least one per class while points allow
    quota = counts * points / n
    take = np.floor(quota).astype(int)
    if points >= len(classes):
        take = np.maximum(take, 1)
    take = np.minimum(take, counts)
    while take.sum() > points:
        take[np.argmax(take - quota)] -= 1
    order = np.argsort(-(quota - take), kind="stable")
    i = 0
    while take.sum() < points:
        c = order[i % len(order)]
        if take[c] < counts[c]:
            take[c] += 1
        i += 1
    chosen = []
    for c, k in zip(classes, take, strict=True):
        members = np.flatnonzero(y == c)
        chosen.append(rng.choice(members, size=int(k), replace=False))
    return sorted(int(i) for i in np.concatenate(chosen))
