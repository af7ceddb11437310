"""The :class:`ImageDataset` container and image conversion to (N, 1, 28, 28) in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leafscope.errors import InputError

IMAGE_SIZE = 28
PIXELS_255 = "pixels/255, range [0,1], no mean/std normalisation"
FLOAT_KEPT = "float values already in [0,1] kept, no mean/std normalisation"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class ImageDataset:
    """Grey 28x28 images in [0, 1] with integer labels.

    Attributes:
        images: float32 tensor (N, 1, 28, 28), values in [0, 1].
        labels: int64 tensor (N,); -1 marks an unlabelled point.
        name: dataset name (canonical for built-in sets, the path for user sets).
        split: ``"train"`` or ``"test"``.
        num_classes: number of classes (0 when unlabelled).
        normalization: how raw values became [0, 1] (and any grey conversion / resizing).
        source: where the data came from (files or generator).
        class_names: optional names of the classes, index = label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    num_classes: int
    normalization: str
    source: str = ""
    class_names: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or tuple(self.images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise InputError(
                f"images have shape {tuple(self.images.shape)}, expected (N, 1, 28, 28): "
                "convert them with leafscope.data.to_unit_images"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise InputError(
                f"labels have shape {tuple(self.labels.shape)}, expected ({self.images.shape[0]},):"
                " give one label per image (-1 when unknown)"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

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
        """JSON-able metadata for result files: name, split, size, classes, normalisation."""
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
            "image_shape": list(self.images.shape[1:]),
            "num_classes": self.num_classes,
            "labelled": bool(labelled.numel() == len(self)),
            "class_counts": counts,
            "normalization": self.normalization,
            "source": self.source,
            "class_names": self.class_names,
        }


def to_unit_images(array: Any, source: str = "data") -> tuple[torch.Tensor, str]:
    """Convert images to float32 (N, 1, 28, 28) in [0, 1], grey, 28x28.

    Accepted shapes: (N, H*W) with a square H*W, (N, H, W), (N, C, H, W) or (N, H, W, C) with
    C in {1, 2, 3, 4} (colour -> grey by ITU-R 601 luma, alpha dropped). uint8 / integers in 0..255
    are divided by 255; floats must already lie in [0, 1].

    Args:
        array: numpy array or tensor.
        source: name used in error messages.

    Returns:
        ``(images, normalization)`` where ``normalization`` records every step applied.

    Raises:
        InputError: empty, bad shape, NaN / inf, or values outside 0..255 ints / [0,1] floats.
    """
    arr = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if arr.size == 0 or arr.ndim < 2:
        raise InputError(f"{source}: images array has shape {arr.shape}: expected (N, H, W) images")
    arr, notes = _to_nchw(arr, source)
    values, note = _to_unit_range(arr, source)
    notes.insert(0, note)
    x = torch.from_numpy(values)
    if x.shape[1] > 1:
        x, colour_note = _to_grey(x)
        notes.append(colour_note)
    h, w = x.shape[-2:]
    if (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
        down = h > IMAGE_SIZE or w > IMAGE_SIZE
        x = F.interpolate(
            x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=down
        ).clamp_(0.0, 1.0)
        notes.append(f"resized {h}x{w} -> 28x28 (bilinear{', antialiased' if down else ''})")
    return x.contiguous(), "; ".join(notes)


def _to_nchw(arr: np.ndarray, source: str) -> tuple[np.ndarray, list[str]]:
    if arr.ndim == 2:
        side = int(round(np.sqrt(arr.shape[1])))
        if side * side != arr.shape[1]:
            raise InputError(
                f"{source}: flat images of {arr.shape[1]} values are not square: "
                "reshape them to (N, H, W)"
            )
        return arr.reshape(arr.shape[0], 1, side, side), [f"flat {arr.shape[1]} -> {side}x{side}"]
    if arr.ndim == 3:
        return arr[:, None], []
    if arr.ndim == 4:
        first, last = arr.shape[1] in (1, 2, 3, 4), arr.shape[-1] in (1, 2, 3, 4)
        if last and not first:
            return np.moveaxis(arr, -1, 1), []
        if first:
            return arr, []
    raise InputError(
        f"{source}: images array has shape {arr.shape}: expected (N, H, W), (N, C, H, W) or "
        "(N, H, W, C) with C in 1..4"
    )


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
        values = arr.astype(np.float32)
        if not np.isfinite(values).all():
            bad = int(np.argwhere(~np.isfinite(values.reshape(len(values), -1)))[0, 0])
            raise InputError(f"{source}: image {bad} contains NaN or inf: clean or drop it")
        lo, hi = float(values.min()), float(values.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"{source}: float pixel values span [{lo:.4g}, {hi:.4g}], expected [0, 1]: "
                "rescale them (e.g. divide 0..255 data by 255) or save them as uint8"
            )
        return values, FLOAT_KEPT
    raise InputError(f"{source}: images have dtype {arr.dtype}: use uint8 or floats in [0, 1]")


def _to_grey(x: torch.Tensor) -> tuple[torch.Tensor, str]:
    c = x.shape[1]
    if c == 2:  # grey + alpha
        return x[:, :1], "alpha channel dropped"
    luma = torch.from_numpy(_LUMA).view(1, 3, 1, 1)
    grey = (x[:, :3] * luma).sum(dim=1, keepdim=True).clamp_(0.0, 1.0)
    note = "RGB converted to grey (0.299 R + 0.587 G + 0.114 B)"
    return grey, note + ("; alpha dropped" if c == 4 else "")
