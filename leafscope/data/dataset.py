"""The dataset container and the conversion of raw arrays, each at the data's own shape.

Images are float32 (N, C, H, W) in [0, 1] with the channel count and size they were stored with;
vectors (tabular data, embeddings) are float32 (N, D). Nothing is converted to grey or resized
here: :mod:`leafscope.data.transforms` does that when asked, and records it in
:attr:`ImageDataset.transforms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from leafscope.errors import InputError

IMAGE_SIZE = 28  # side of the MNIST-family sets and of the generated noise set
PIXELS_255 = "pixels/255, range [0,1], no mean/std normalisation"
FLOAT_KEPT = "float values already in [0,1] kept, no mean/std normalisation"
VECTORS_KEPT = "vector values as float32, no normalisation"
LAYOUTS = ("auto", "nchw", "nhwc")
_CHANNELS = (1, 2, 3, 4)


@dataclass
class ImageDataset:
    """Images (N, C, H, W) in [0, 1] or vectors (N, D), with integer labels.

    Attributes:
        images: float tensor, (N, C, H, W) images in [0, 1] or (N, D) vectors.
        labels: int64 tensor (N,); -1 marks an unlabelled point.
        name: dataset name (canonical for built-in sets, the path for user sets).
        split: ``"train"`` or ``"test"``.
        num_classes: number of classes (0 when unlabelled).
        normalization: how the stored values became these floats.
        source: where the data came from (files or generator).
        class_names: optional names of the classes, index = label.
        transforms: what was done to the data after reading, in order (grey conversion,
            resizing), one readable line each; empty when the data are as stored.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    num_classes: int
    normalization: str
    source: str = ""
    class_names: list[str] | None = field(default=None)
    transforms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        x = self.images
        if _is_texts(x):  # a batch of texts (leafscope.data.text.TextBatch): no tensor checks
            if self.labels.shape != (len(x),):
                raise InputError(f"{len(x)} texts but labels of shape {tuple(self.labels.shape)}")
            return
        if not torch.is_tensor(x) or x.ndim not in (2, 4) or not x.is_floating_point():
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise InputError(
                f"dataset images have shape {shape}: expected a float tensor (N, C, H, W) of "
                "images or (N, D) of vectors; convert arrays with leafscope.data.to_unit_images "
                "or to_vectors"
            )
        if self.labels.shape != (x.shape[0],):
            raise InputError(
                f"labels have shape {tuple(self.labels.shape)}, expected ({x.shape[0]},):"
                " give one label per point (-1 when unknown)"
            )

    def __len__(self) -> int:
        return len(self.images) if _is_texts(self.images) else int(self.images.shape[0])

    @property
    def is_image(self) -> bool:
        """True for (N, C, H, W) images, False for (N, D) vectors (and texts)."""
        return getattr(self.images, "ndim", 0) == 4

    @property
    def is_text(self) -> bool:
        """True for a batch of texts (strings)."""
        return _is_texts(self.images)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one point: (C, H, W) or (D,); () for texts."""
        if _is_texts(self.images):
            return ()
        return tuple(int(s) for s in self.images.shape[1:])

    def subset(self, indices: Any) -> ImageDataset:
        """A new dataset holding the points ``indices`` (tensor, list, array or slice)."""
        if isinstance(indices, slice):
            return replace(self, images=self.images[indices], labels=self.labels[indices])
        index = torch.as_tensor(np.asarray(indices)).reshape(-1)
        n = len(self)
        if index.dtype == torch.bool:
            if index.numel() != n:
                raise InputError(f"boolean mask has {index.numel()} entries for {n} points")
            index = index.nonzero().flatten()
        index = index.long()
        if index.numel() and (int(index.min()) < -n or int(index.max()) >= n):
            raise InputError(
                f"subset indices span [{int(index.min())}, {int(index.max())}] but the dataset "
                f"has {n} points: use indices in [0, {n - 1}]"
            )
        return replace(self, images=self.images[index], labels=self.labels[index])

    def describe(self) -> dict[str, Any]:
        """JSON-able metadata for result files: name, split, shape, classes, provenance."""
        labelled = self.labels[self.labels >= 0]
        counts = (
            torch.bincount(labelled, minlength=self.num_classes).tolist()
            if labelled.numel()
            else []
        )
        return {
            "name": self.name,
            "split": self.split,
            "num_points": len(self),
            "kind": "images" if self.is_image else "vectors",
            "input_shape": list(self.input_shape),
            "image_shape": list(self.input_shape) if self.is_image else None,
            "num_classes": self.num_classes,
            "labelled": bool(labelled.numel() == len(self)),
            "class_counts": counts,
            "normalization": self.normalization,
            "transforms": list(self.transforms),
            "source": self.source,
            "class_names": self.class_names,
        }


def _is_texts(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _as_numpy(array: Any) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def to_unit_images(
    array: Any, source: str = "data", layout: str = "auto"
) -> tuple[torch.Tensor, str]:
    """Convert images to float32 (N, C, H, W) in [0, 1] at their own channel count and size.

    Accepted shapes: (N, H, W) grey; (N, C, H, W) or (N, H, W, C). With ``layout="auto"`` the
    channel axis is the one (second or last) of size 1..4; give ``"nchw"`` / ``"nhwc"`` when
    both or neither are (e.g. more than 4 channels). uint8 / integers in 0..255 are divided by
    255, booleans become 0/1, floats must already lie in [0, 1].

    Args:
        array: numpy array or tensor.
        source: name used in error messages.
        layout: ``"auto"``, ``"nchw"`` or ``"nhwc"`` (4-D arrays only).

    Returns:
        ``(images, normalization)``; ``normalization`` says how values became [0, 1].

    Raises:
        InputError: empty, bad shape, ambiguous layout, NaN / inf, or values outside 0..255
            integers / [0, 1] floats.
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    arr = _as_numpy(array)
    if arr.size == 0 or arr.ndim not in (3, 4):
        hint = (
            ": (N, D) arrays are vectors (load them with to_vectors) or reshape them to (N, H, W)"
            if arr.ndim == 2
            else ""
        )
        raise InputError(
            f"{source}: images array has shape {arr.shape}: expected (N, H, W), (N, C, H, W) or "
            f"(N, H, W, C) with N >= 1{hint}"
        )
    arr = arr[:, None] if arr.ndim == 3 else _channels_first(arr, source, layout)
    values, note = _to_unit_range(arr, source)
    return torch.from_numpy(np.ascontiguousarray(values)), note


def _channels_first(arr: np.ndarray, source: str, layout: str) -> np.ndarray:
    if layout == "auto":
        first, last = arr.shape[1] in _CHANNELS, arr.shape[-1] in _CHANNELS
        if first == last:
            why = "both" if first else "neither"
            raise InputError(
                f"{source}: cannot tell the channel axis of images of shape {arr.shape} ({why} "
                "axis 1 and the last axis have 1..4 entries): pass layout='nchw' or 'nhwc'"
            )
        layout = "nchw" if first else "nhwc"
    return arr if layout == "nchw" else np.moveaxis(arr, -1, 1)


def _to_unit_range(arr: np.ndarray, source: str) -> tuple[np.ndarray, str]:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255), PIXELS_255
    if arr.dtype == bool:
        return arr.astype(np.float32), "boolean values as 0/1, no mean/std normalisation"
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise InputError(
                f"{source}: integer pixel values span [{lo}, {hi}], expected 0..255: "
                "rescale to uint8 0..255 or floats in [0, 1]"
            )
        return arr.astype(np.float32) / np.float32(
            255
        ), "integers 0..255 /255, range [0,1], no mean/std normalisation"
    if np.issubdtype(arr.dtype, np.floating):
        values = _finite_float32(arr, source, "image")
        lo, hi = float(values.min()), float(values.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"{source}: float pixel values span [{lo:.4g}, {hi:.4g}], expected [0, 1]: "
                "rescale them (e.g. divide 0..255 data by 255) or save them as uint8"
            )
        return values, FLOAT_KEPT
    raise InputError(f"{source}: images have dtype {arr.dtype}: use uint8 or floats in [0, 1]")


def _finite_float32(arr: np.ndarray, source: str, what: str) -> np.ndarray:
    values = arr.astype(np.float32)
    finite = np.isfinite(values.reshape(len(values), -1))
    if not finite.all():
        bad = int(np.argwhere(~finite)[0, 0])
        raise InputError(f"{source}: {what} {bad} contains NaN or inf: clean or drop it")
    return values


def to_vectors(array: Any, source: str = "data") -> tuple[torch.Tensor, str]:
    """Convert an (N, D) array of vectors (tabular data, embeddings) to float32 (N, D).

    uint8 values are divided by 255 (byte pixels); other numbers are kept as they are.

    Args:
        array: numpy array or tensor, (N, D) with N, D >= 1.
        source: name used in error messages.

    Returns:
        ``(vectors, normalization)``.

    Raises:
        InputError: not 2-D, empty, non-numeric, or NaN / inf.
    """
    arr = _as_numpy(array)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"{source}: vectors array has shape {arr.shape}: expected (N, D) with N, D >= 1"
        )
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / np.float32(255)), "uint8 values/255"
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{source}: vectors have dtype {arr.dtype}: use numbers")
    values = _finite_float32(arr, source, "vector")
    return torch.from_numpy(np.ascontiguousarray(values)), VECTORS_KEPT


def to_data(array: Any, source: str = "data", layout: str = "auto") -> tuple[torch.Tensor, str]:
    """Images or vectors by the array's rank: 2-D -> :func:`to_vectors`, 3/4-D -> images.

    Raises:
        InputError: any other rank, or what the chosen conversion raises.
    """
    arr = _as_numpy(array)
    if arr.ndim == 2:
        return to_vectors(arr, source)
    if arr.ndim in (3, 4):
        return to_unit_images(arr, source, layout)
    raise InputError(
        f"{source}: array has shape {arr.shape}: expected (N, D) vectors or (N, H, W), "
        "(N, C, H, W), (N, H, W, C) images"
    )
