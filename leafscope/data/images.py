""":func:`load_images`: one entry point for built-in and user data sets, at their own shape."""

from __future__ import annotations

import os

from leafscope.data.dataset import ImageDataset
from leafscope.data.sets import USER_PREFIXES, open_points
from leafscope.errors import InputError

__all__ = ["SPLITS", "USER_PREFIXES", "load_images"]

SPLITS = ("train", "test")


def load_images(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    limit: int | None = None,
    seed: int = 0,
    grey: bool = False,
    resize: tuple[int, int] | str | None = None,
    label_column: str | None = "label",
    layout: str = "auto",
    holdout: float | None = None,
) -> ImageDataset:
    """Load a data set at its own shape: images (N, C, H, W) in [0, 1] or vectors (N, D).

    Nothing is converted to grey or resized unless asked (``grey``, ``resize``); what was done
    is recorded in the result's ``transforms``.

    Args:
        name: built-in ``mnist``, ``fashion-mnist`` (``fashion_mnist``, ``fmnist``), ``kmnist``,
            ``emnist-letters`` (all (N, 1, 28, 28)), ``cifar10``, ``cifar100``,
            ``cifar100-coarse``, ``svhn`` (all (N, 3, 32, 32)), ``digits`` (sklearn 8x8 digits
            upsampled to 28x28), ``noise`` ((N, 1, 28, 28) uniform); or a user set: a path to an
            ``.npz`` / ``.npy`` (any shape: (N, D) vectors, (N, H, W), (N, C, H, W) or
            (N, H, W, C) images), a ``.csv`` (vectors, label column ``label_column``), a folder
            of image files (sub-folder = class), an IDX images file; or ``npz:PATH``,
            ``npy:PATH``, ``csv:PATH``, ``folder:PATH``, ``idx:PATH``.
        split: ``"train"``, ``"test"`` or ``"all"`` (train then test). A set without a
            split of its own is served whole as ``train`` and as ``test`` here (as before; the
            commands still read it so), unless ``holdout`` is given;
            :meth:`leafscope.data.DataSpec.open` refuses that and asks for ``all`` or a
            holdout fraction.
        data_dir: folder searched first for data files (see :func:`data_search_path`).
        download: fetch missing files of built-in sets from their upstream mirrors (verified).
        limit: keep only the first ``limit`` points (in order).
        seed: seed of generated data (``noise``) and of the ``digits`` train/test split.
        grey: convert images to one channel by ITU-R 601 luma (:func:`transforms.to_grey`).
        resize: ``(H, W)`` or ``"H,W"``: resize images bilinearly (:func:`transforms.resize`).
        label_column: label column of a CSV (None or ``"none"``: unlabelled).
        layout: channel axis of 4-D arrays in npz / npy files: ``auto``, ``nchw`` or ``nhwc``.
        holdout: fraction in (0, 1) of a set without a split held out as ``test`` by a
            permutation seeded by ``seed`` (the rest is ``train``).

    The points are decoded through :func:`leafscope.data.open_points` (the lazy point set
    every task reads), all at once here.

    Returns:
        An :class:`ImageDataset` (labels int64 (N,), -1 unlabelled).

    Raises:
        InputError: unknown name or split, bad limit, unusable user arrays, or grey / resize
            asked of vectors.
        DataFileError: missing, corrupt or undecodable files.
    """
    if split not in (*SPLITS, "all"):
        raise InputError(f"unknown split {split!r}: use 'train', 'test' or 'all'")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputError(f"limit must be a non-negative integer or None, got {limit!r}")
    points = open_points(
        name, split, data_dir=data_dir, download=download, seed=seed, grey=grey, resize=resize,
        label_column=label_column, layout=layout, holdout=holdout, strict=False,
    )  # fmt: skip
    n = len(points) if limit is None else min(limit, len(points))
    x, y = points.take(range(n))
    return ImageDataset(
        x, y, points.name, points.split, points.num_classes, points.normalization,
        source=points.source, class_names=points.class_names, transforms=list(points.transforms),
    )  # fmt: skip
