"""Texts as points: ``.csv`` (a text column and a label column), ``.jsonl`` (one JSON object a
line) and ``.txt`` (one text a line, unlabelled).

A :class:`TextPointSet` holds the texts themselves. Its :meth:`~TextPointSet.take` returns a
:class:`TextBatch` (a tuple of strings) and the labels: tokenising needs the tokenizer saved
with the model, so the model does it (:class:`leafscope.models.text.TextClassifier` turns a
text into token ids, its input word embeddings and logits). A text point has no fixed shape
(``input_shape == ()``, ``is_text``); its dimension is L × E for its own L tokens.

Splits: a ``split`` column (``train`` / ``test`` values) gives the set its own split. A file
without one is one evaluation set: every split name reads it whole (its description says so),
and ``holdout`` splits it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leafscope.data.spec import PointSet
from leafscope.errors import DataFileError, InputError

__all__ = [
    "TEXT_SUFFIXES",
    "TextBatch",
    "TextPointSet",
    "csv_has_text",
    "open_text_file",
    "read_texts",
]

#: File suffixes read as texts (a ``.csv`` is read as texts when it has a text column).
TEXT_SUFFIXES = (".jsonl", ".txt")
#: The column / key of the texts unless ``text_column`` names another.
DEFAULT_TEXT_COLUMN = "text"
SPLIT_COLUMN = "split"
TEXTS_KEPT = "texts as stored, tokenised by the model's own tokenizer"
_NO_LABELS = ("", "none")


class TextBatch(tuple):
    """Texts of a batch (a tuple of ``str``). ``to(device)`` returns the batch itself, so code
    that moves a batch of points to a device works unchanged; the model tokenises."""

    def to(self, *args: Any, **kwargs: Any) -> TextBatch:
        return self

    def __repr__(self) -> str:
        return f"TextBatch({list(self)!r})"


class TextPointSet(PointSet):
    """Texts with integer labels (-1 unlabelled), taken as :class:`TextBatch` batches.

    Args:
        texts: the texts.
        labels: int64 ``(N,)``.
        name: the file's path.
        split: the split's name.
        class_names: names of the labels when the file names them (sorted, numbered from 0).
        source: provenance (file, columns, split note).
    """

    input_shape: tuple[int, ...] = ()

    def __init__(
        self,
        texts: Sequence[str],
        labels: Tensor,
        *,
        name: str,
        split: str,
        class_names: list[str] | None = None,
        source: str = "",
    ):
        if len(texts) != int(labels.shape[0]):
            raise InputError(f"{name}: {len(texts)} texts but {int(labels.shape[0])} labels")
        self.texts = list(texts)
        self._labels = labels.long()
        self.name, self.split = name, split
        self.class_names = class_names
        labelled = self._labels[self._labels >= 0]
        self.num_classes = (
            len(class_names) if class_names else int(labelled.max()) + 1 if labelled.numel() else 0
        )
        self.normalization = TEXTS_KEPT
        self.source = source
        self.transforms = ()

    @property
    def is_text(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def labels(self) -> Tensor:
        return self._labels

    def take(self, indices: Sequence[int]) -> tuple[TextBatch, Tensor]:  # type: ignore[override]
        """The texts of ``indices`` (a :class:`TextBatch`) and their labels, in order."""
        index = self.check_indices(indices)
        return TextBatch(self.texts[i] for i in index.tolist()), self._labels[index]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(kind="texts", input_shape=[], image_shape=None)
        lengths = [len(t.split()) for t in self.texts]
        info["words_per_text"] = {
            "min": int(min(lengths, default=0)),
            "median": float(np.median(lengths)) if lengths else 0.0,
            "max": int(max(lengths, default=0)),
        }
        return info


# ------------------------------------------------------------------------------------- reading
def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [
                {k.strip(): (v or "") for k, v in row.items() if k is not None}
                for row in reader
                if any((v or "").strip() for v in row.values() if isinstance(v, str))
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(
            f"cannot read {path} as CSV ({type(exc).__name__}: {exc}): save it as UTF-8 text "
            "with a header row"
        ) from None
    return header, rows


def _read_jsonl(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    rows, keys = [], {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"cannot read {path} as UTF-8 text ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(
                f"{path}: line {number} is not JSON ({exc.msg}): write one JSON object a line"
            ) from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number} is not a JSON object: write one object a line")
        rows.append(row)
        keys.update(dict.fromkeys(row))
    return list(keys), rows


def csv_has_text(path: Path, text_column: str | None) -> bool:
    """Whether a ``.csv`` is read as texts: ``text_column`` is given, or the header has a
    ``text`` column (numeric CSVs are vectors)."""
    if text_column:
        return True
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return DEFAULT_TEXT_COLUMN in [h.strip() for h in header]


def _labels(values: list[Any], path: Path, column: str) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels as they are (-1 unlabelled); any other values name classes (sorted)."""
    texts = [str(v).strip() for v in values]
    try:
        return np.array([int(float(v)) for v in texts], dtype=np.int64), None
    except ValueError:
        pass
    if "" in texts:
        raise InputError(f"{path}: row {texts.index('') + 1} has an empty {column!r}")
    names = sorted(set(texts))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in texts], dtype=np.int64), names


def read_texts(
    path: str | Path, *, text_column: str | None = None, label_column: str | None = "label"
) -> dict[str, Any]:
    """Read a text file: ``texts``, ``labels`` (int64 array, -1 unlabelled), ``class_names``,
    ``splits`` (the ``split`` column's values, or None) and ``source``.

    Args:
        path: ``.csv`` (header row), ``.jsonl`` or ``.txt``.
        text_column: column / key of the texts (default ``text``).
        label_column: column / key of the labels; ``none`` for unlabelled data. ``.txt``
            files are unlabelled.

    Raises:
        InputError: a missing column, an empty text, no texts. DataFileError: unreadable file.
    """
    path = Path(path)
    column = text_column or DEFAULT_TEXT_COLUMN
    suffix = path.suffix.lower()
    if suffix == ".txt":
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFileError(f"cannot read {path} as UTF-8 text ({exc})") from None
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise InputError(f"{path} holds no text: write one text a line")
        return {
            "texts": texts,
            "labels": np.full(len(texts), -1, dtype=np.int64),
            "class_names": None,
            "splits": None,
            "source": f"{path} (one text a line, unlabelled)",
        }
    header, rows = _read_jsonl(path) if suffix == ".jsonl" else _read_csv(path)
    what = "key" if suffix == ".jsonl" else "column"
    if column not in header:
        raise InputError(
            f"{path} has no text {what} {column!r} ({what}s: {', '.join(header) or 'none'}): "
            "pass `text_column=NAME`"
        )
    if not rows:
        raise InputError(f"{path} holds no rows of texts")
    texts = []
    for number, row in enumerate(rows, 1):
        value = row.get(column)
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{path}: row {number} has no text in {column!r}: give every row one")
        texts.append(value)
    unlabelled = label_column is None or label_column.strip().lower() in _NO_LABELS
    if not unlabelled and label_column not in header:
        raise InputError(
            f"{path} has no label {what} {label_column!r} ({what}s: {', '.join(header)}): pass "
            "`label_column=NAME`, or `label_column=none` for unlabelled texts"
        )
    labels, names = (
        (np.full(len(texts), -1, dtype=np.int64), None)
        if unlabelled
        else _labels([row.get(label_column, "") for row in rows], path, label_column)
    )
    if labels.size and labels.min() < -1:
        raise InputError(f"{path}: labels must be integers >= 0 (-1 = unlabelled)")
    splits = None
    if SPLIT_COLUMN in header:
        splits = [str(row.get(SPLIT_COLUMN, "")).strip().lower() for row in rows]
        bad = sorted(set(splits) - {"train", "test"})
        if bad:
            raise InputError(
                f"{path}: the {SPLIT_COLUMN!r} {what} holds {bad}: use train or test in every row"
            )
    labelled = "unlabelled" if unlabelled else f"labels from {label_column!r}"
    return {
        "texts": texts,
        "labels": labels,
        "class_names": names,
        "splits": splits,
        "source": f"{path} (texts from {column!r}, {labelled})",
    }


def open_text_file(
    path: str | Path,
    split: str,
    *,
    text_column: str | None = None,
    label_column: str | None = "label",
    content: dict[str, Any] | None = None,
) -> TextPointSet:
    """The texts of ``split`` of a text file (see the module docstring for splits).

    Args:
        content: what :func:`read_texts` returned (read again when None).
    """
    path = Path(path)
    content = content or read_texts(path, text_column=text_column, label_column=label_column)
    texts, labels = content["texts"], content["labels"]
    source = content["source"]
    splits = content["splits"]
    if splits is not None and split in ("train", "test"):
        keep = [i for i, s in enumerate(splits) if s == split]
        if not keep:
            raise InputError(f"{path} has no {split} rows in its {SPLIT_COLUMN!r} column")
        texts = [texts[i] for i in keep]
        labels = labels[keep]
        source = f"{source}; split {split!r}: {len(keep)} of {len(splits)} rows"
    elif splits is None and split in ("train", "test"):
        source = f"{source}; no {SPLIT_COLUMN!r} column: the whole file serves as {split}"
    return TextPointSet(
        texts,
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        name=str(path),
        split=split,
        class_names=content["class_names"],
        source=source,
    )
