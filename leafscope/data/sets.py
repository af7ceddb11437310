""":func:`open_points`: any data set name or path opened as a lazy point set, with its split.

Built-in sets have their own train/test splits (``all``: train then test). A user set without a
split (an image folder without ``train`` / ``test`` sub-folders, an npz without ``x_train`` /
``x_test``, .npy, .csv, one IDX file) is used whole (``all``); its ``train`` and ``test`` exist
only with a ``holdout`` fraction, which a seeded permutation holds out as ``test``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leafscope.data import builtin, registry, user
from leafscope.data.pointsets import ConcatPointSet, SubsetPointSet, TransformedPointSet
from leafscope.data.spec import SPLITS, PointSet
from leafscope.errors import DataFileError, InputError

__all__ = ["USER_PREFIXES", "has_split", "holdout_indices", "open_points"]

USER_PREFIXES = ("npz:", "npy:", "csv:", "folder:", "idx:")


@dataclass
class _Source:
    """A named set: ``opener(split)`` opens one split (``train`` / ``test`` when ``has_splits``;
    otherwise the whole set, ``split`` recorded only). ``resizes``: the opener resizes."""

    name: str
    has_splits: bool
    opener: Callable[[str], PointSet]
    resizes: bool = False
    text: bool = False  # texts: the opener serves every split name (see leafscope.data.text)


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train, test)`` indices of ``range(n)``: a seeded permutation holds out
    ``round(fraction * n)`` points (at least one, and one left) as test; both sorted, disjoint,
    together ``range(n)``.

    Examples:
        >>> train, test = holdout_indices(10, 0.3, seed=0)
        >>> len(train), len(test), sorted(train + test) == list(range(10))
        (7, 3, True)
    """
    from leafscope.data.splits import train_val_split

    if n < 2:
        raise InputError(f"a holdout split needs at least 2 points (the set has {n})")
    train, test = train_val_split(n, fraction, seed=seed)
    return train.tolist(), test.tolist()


def has_split(
    name: str, data_dir: str | os.PathLike | None = None, text_column: str | None = None
) -> bool:
    """Whether the set ``name`` has its own train/test split (built-in sets, folders with
    ``train`` / ``test`` sub-folders, npz with ``x_train`` / ``x_test``), read without opening
    it: the folder listing or the npz directory only.

    Raises:
        InputError: unknown name. DataFileError: a user file that is missing or unreadable.
    """
    return _source(name, data_dir, False, 0, "label", "auto", None, None, text_column).has_splits


def open_points(
    name: str,
    split: str = "test",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
    grey: bool = False,
    resize: tuple[int, int] | str | None = None,
    label_column: str | None = "label",
    layout: str = "auto",
    holdout: float | None = None,
    input_shape: tuple[int, ...] | None = None,
    strict: bool = True,
    text_column: str | None = None,
    needed_for: str | None = None,
) -> PointSet:
    """Open a data set as a point set that decodes only the points ``take`` asks for.

    Memory: uint8 sets (MNIST family, CIFAR, SVHN, IDX, byte npz) are kept as bytes, uncompressed
    npz / npy / IDX files are memory-mapped, image folders keep only their file list; points
    become float32 (grey / resize applied) a batch at a time.

    Args:
        name: a built-in set (``mnist``, ``cifar10``, ``svhn``, ``digits``, ``noise``, ...) or
            a path (.npz, .npy, .csv, image folder, IDX file; or ``npz:PATH`` ...).
        split: ``train``, ``test`` or ``all`` (train then test; a set without a split: whole).
        data_dir: folder searched first for built-in files.
        download: fetch missing built-in files (verified).
        seed: seed of generated data, of the ``digits`` split and of ``holdout``.
        grey: convert images to one channel (ITU-R 601 luma).
        resize: ``(H, W)`` or ``"H,W"``: resize images bilinearly (antialiased when shrinking).
        label_column: label column of a CSV (None or ``"none"``: unlabelled).
        layout: channel axis of 4-D arrays in npz / npy files: ``auto``, ``nchw`` or ``nhwc``.
        holdout: fraction in (0, 1) of a set without a split held out as ``test`` (the rest is
            ``train``).
        input_shape: point shape of ``noise`` (e.g. a model's input shape; default (1, 28, 28)).
        strict: refuse ``train`` / ``test`` of a set without a split and without ``holdout``;
            ``False`` serves the whole set under either name (what :func:`load_images` did).
        text_column: the text column / key of a ``.csv`` / ``.jsonl`` of texts (default
            ``text``; a ``.csv`` with a ``text`` column is read as texts). Texts open as a
            :class:`~leafscope.data.text.TextPointSet`; a text file without a ``split`` column
            serves every split name whole (see :mod:`leafscope.data.text`).
        needed_for: why the caller needs this very split (e.g. "ood fits its detectors on the
            train split"): a set without one is then refused naming only ``holdout`` (the whole
            set cannot serve as a train or test split).

    Raises:
        InputError: unknown name or split, a split the set does not have, ``holdout`` of a set
            with its own split, unusable data, or grey / resize of vectors.
        DataFileError: missing, corrupt or undecodable files.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if holdout is not None and not 0.0 < float(holdout) < 1.0:
        raise InputError(f"holdout must lie in (0, 1), e.g. 0.25 (got {holdout!r})")
    source = _source(
        name, data_dir, download, seed, label_column, layout, resize, input_shape, text_column
    )
    base = _split(source, split, holdout, seed, strict, needed_for)
    if source.text:
        if grey or resize is not None:
            raise InputError(
                f"`grey` and `resize` convert images; {source.name} holds texts: drop them"
            )
        return base
    size = None if source.resizes else resize
    if not grey and size is None:
        return base
    return TransformedPointSet(base, grey=grey, size=size)


def _split(
    source: _Source,
    split: str,
    holdout: float | None,
    seed: int,
    strict: bool,
    needed_for: str | None = None,
):
    if source.text and holdout is None:
        return source.opener(split)
    if source.has_splits:
        if holdout is not None:
            raise InputError(
                f"{source.name} has its own train/test split: drop the holdout fraction (it "
                "splits only sets without one)"
            )
        if split == "all":
            return ConcatPointSet([source.opener("train"), source.opener("test")])
        return source.opener(split)
    if split == "all":
        return source.opener("all")
    if holdout is None:
        if not strict:
            return source.opener(split)
        if needed_for:
            raise InputError(
                f"{source.name} has no train/test split, and {needed_for}: pass `holdout=F` "
                "(e.g. 0.25) to hold out a seeded fraction of it as its test split"
            )
        raise InputError(
            f"{source.name} has no train/test split: use `split=all` (the whole set), or "
            "`holdout=F` (e.g. 0.2) to hold out a seeded fraction of it as its test split"
        )
    whole = source.opener("all")
    train, test = holdout_indices(len(whole), float(holdout), seed)
    chosen = test if split == "test" else train
    note = f"holdout {holdout:g} seed {seed}: {split} = {len(chosen)} of {len(whole)} points"
    return SubsetPointSet(whole, chosen, split=split, note=note)


def _source(
    name, data_dir, download, seed, label_column, layout, size, input_shape, text_column=None
) -> _Source:
    lowered = name.lower()
    for prefix in USER_PREFIXES:
        if lowered.startswith(prefix):
            path = Path(name[len(prefix) :]).expanduser()
            return _user_source(path, prefix[:-1], label_column, layout, size, text_column)
    key = registry.canonical_name(name)
    if key == "digits":
        return _Source(key, True, lambda s: builtin.open_digits(s, seed=seed))
    if key == "noise":
        shape = tuple(input_shape) if input_shape else None
        return _Source(key, True, lambda s: builtin.open_noise(s, seed=seed, input_shape=shape))
    if key in registry.IDX_KEYS:
        return _Source(key, True, lambda s: builtin.open_idx_set(
            key, s, data_dir=data_dir, download=download))  # fmt: skip
    if key in ("cifar10", "cifar100", "cifar100-coarse"):
        from leafscope.data.cifar import open_cifar_set

        return _Source(key, True, lambda s: open_cifar_set(
            key, s, data_dir=data_dir, download=download))  # fmt: skip
    if key == "svhn":
        from leafscope.data.svhn import open_svhn_set

        return _Source(key, True, lambda s: open_svhn_set(
            s, data_dir=data_dir, download=download))  # fmt: skip
    path = Path(name).expanduser()
    if path.exists():
        return _user_source(path, _guess_kind(path), label_column, layout, size, text_column)
    raise InputError(
        f"unknown dataset {name!r}: use one of {', '.join(registry.BUILTIN_IMAGE_NAMES)}, "
        "or an existing path / " + " / ".join(f"{p}PATH" for p in USER_PREFIXES)
    )


def _guess_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy", ".csv"):
        return suffix[1:]
    if suffix in (".jsonl", ".txt"):
        return "text"
    if "ubyte" in path.name or "idx" in path.name:
        return "idx"
    raise InputError(
        f"cannot tell the format of {path}: give a folder of images, an .npz, .npy or .csv file, "
        "texts (.csv with a text column, .jsonl, .txt), or an IDX file (or prefix the path "
        "with npz:, npy:, csv:, folder: or idx:)"
    )


def _text_source(path: Path, label_column, text_column) -> _Source:
    from leafscope.data.text import open_text_file, read_texts

    if not path.is_file():
        raise DataFileError(f"text file {path} does not exist: check the path")
    content = read_texts(path, text_column=text_column, label_column=label_column)

    def opener(split: str) -> PointSet:
        return open_text_file(path, split, content=content)

    return _Source(str(path), content["splits"] is not None, opener, text=True)


def _user_source(path: Path, kind: str, label_column, layout: str, size, text_column=None):
    name = str(path)
    if kind == "text" or (kind == "csv" and path.is_file() and _csv_texts(path, text_column)):
        return _text_source(path, label_column, text_column)
    if kind == "folder":
        if not path.is_dir():
            raise DataFileError(f"folder {path} does not exist: give a folder of image files")
        splits = user.folder_splits(path)
        if not splits:
            return _Source(name, False, lambda s: user.FolderPointSet(path, path, s, size=size),
                           resizes=True)  # fmt: skip
        names = user.folder_class_names([path / s for s in splits])

        def open_folder(split: str) -> PointSet:
            if split not in splits:
                raise InputError(
                    f"{path} has a {splits[0]} folder but no {split} folder: add {path / split} "
                    f"or use the {splits[0]} split"
                )
            return user.FolderPointSet(path, path / split, split, size=size, class_names=names)

        return _Source(name, True, open_folder, resizes=True)
    if not path.is_file():
        raise DataFileError(f"{kind} file {path} does not exist: check the path")
    if kind == "npz":
        split_keys = user.npz_has_splits(user.npz_keys(path))
        return _Source(name, split_keys, lambda s: user.open_npz(
            path, s, layout=layout, whole=not split_keys))  # fmt: skip
    if kind == "npy":
        return _Source(name, False, lambda s: user.open_npy(path, s, layout=layout))
    if kind == "csv":
        from leafscope.data.pointsets import as_point_set
        from leafscope.data.tabular import load_csv_set

        return _Source(name, False, lambda s: as_point_set(
            load_csv_set(path, s, None, label_column=label_column)))  # fmt: skip
    return _Source(name, False, lambda s: user.open_idx_file(path, s))


def _csv_texts(path: Path, text_column: str | None) -> bool:
    from leafscope.data.text import csv_has_text

    return csv_has_text(path, text_column)
