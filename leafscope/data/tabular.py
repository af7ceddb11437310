"""Tabular data: a ``.csv`` with a header row, numeric feature columns and a label column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from leafscope.data.dataset import VECTORS_KEPT, ImageDataset
from leafscope.errors import DataFileError, InputError

NO_LABELS = ("", "none")


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(
            f"cannot read {path} as CSV ({type(exc).__name__}: {exc}): save it as UTF-8 text "
            "with a header row"
        ) from None
    if len(rows) < 2:
        raise InputError(f"{path} has {len(rows)} non-empty rows: give a header row and data rows")
    return [c.strip() for c in rows[0]], rows[1:]


def _labels(cells: list[str], path: Path, column: str) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels as they are; any other text names classes (sorted, numbered from 0)."""
    values = [c.strip() for c in cells]
    try:
        return np.array([int(v) for v in values], dtype=np.int64), None
    except ValueError:
        pass
    if "" in values:
        row = values.index("") + 2
        raise InputError(f"{path}: line {row} has an empty {column!r}: give every row a label")
    names = sorted(set(values))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in values], dtype=np.int64), names


def load_csv_set(
    path: Path, split: str, limit: int | None, label_column: str | None = "label"
) -> ImageDataset:
    """Vectors (N, D) float32 from a CSV; every column but the label column is a feature.

    The same file serves both splits. Labels are integers (>= 0, -1 = unlabelled) or class
    names (sorted and numbered, recorded in ``class_names``).

    Args:
        path: the ``.csv`` file (header row first).
        split: recorded only.
        limit: keep the first ``limit`` rows.
        label_column: header of the label column; None, ``""`` or ``"none"`` for unlabelled data.

    Raises:
        InputError: the label column is missing, ragged rows, non-numeric or non-finite features.
        DataFileError: the file cannot be read.
    """
    header, rows = _read_rows(path)
    rows = rows[:limit]
    unlabelled = label_column is None or label_column.strip().lower() in NO_LABELS
    if not unlabelled and label_column not in header:
        raise InputError(
            f"{path} has no column {label_column!r} (columns: {', '.join(header)}): pass "
            "`label_column=NAME`, or `label_column=none` for unlabelled data"
        )
    li = None if unlabelled else header.index(label_column)
    features = [i for i in range(len(header)) if i != li]
    if not features:
        raise InputError(f"{path} has no feature columns besides {label_column!r}")
    values = np.empty((len(rows), len(features)), dtype=np.float64)
    for r, row in enumerate(rows):
        if len(row) != len(header):
            raise InputError(
                f"{path}: line {r + 2} has {len(row)} fields, the header has {len(header)}"
            )
        for j, i in enumerate(features):
            try:
                values[r, j] = float(row[i])
            except ValueError:
                raise InputError(
                    f"{path}: line {r + 2}, column {header[i]!r} holds {row[i]!r}, not a number: "
                    "give numeric features (encode categories as numbers)"
                ) from None
    if not np.isfinite(values).all():
        r, j = np.argwhere(~np.isfinite(values))[0]
        raise InputError(
            f"{path}: line {r + 2}, column {header[features[j]]!r} is NaN or inf: clean or drop it"
        )
    from leafscope.data.user import labels_to_tensor

    y_raw, class_names = None, None
    if li is not None:
        y_raw, class_names = _labels([row[li] for row in rows], path, label_column)
    y, num_classes = labels_to_tensor(y_raw, len(rows), str(path))
    return ImageDataset(
        images=torch.from_numpy(values.astype(np.float32)),
        labels=y,
        name=str(path),
        split=split,
        num_classes=len(class_names) if class_names else num_classes,
        normalization=VECTORS_KEPT,
        source=f"{path} ({len(features)} feature columns, "
        + ("unlabelled)" if li is None else f"labels from {label_column!r})"),
        class_names=class_names,
    )
