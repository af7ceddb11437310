"""Planetoid citation graphs (Cora, CiteSeer) read from the original ``ind.*`` files.

The files are Python 2 pickles; they are read with :class:`SafeUnpickler`, which resolves only the
numpy / scipy.sparse / collections names these files use, so a malicious file cannot run code.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from leafscope.data.registry import PLANETOID_KEYS, planetoid_spec
from leafscope.data.search import locate
from leafscope.errors import DataFileError

if TYPE_CHECKING:
    from torch_geometric.data import Data

NUM_VAL = 500

_ALLOWED_NAMES = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy.core.multiarray", "scalar"),
    ("scipy.sparse.csr", "csr_matrix"): ("scipy.sparse", "csr_matrix"),
    ("scipy.sparse._csr", "csr_matrix"): ("scipy.sparse", "csr_matrix"),
    ("scipy.sparse", "csr_matrix"): ("scipy.sparse", "csr_matrix"),
    ("scipy.sparse.csc", "csc_matrix"): ("scipy.sparse", "csc_matrix"),
    ("scipy.sparse._csc", "csc_matrix"): ("scipy.sparse", "csc_matrix"),
    ("scipy.sparse", "csc_matrix"): ("scipy.sparse", "csc_matrix"),
    ("collections", "defaultdict"): ("collections", "defaultdict"),
    ("_codecs", "encode"): ("_codecs", "encode"),  # bytes in protocol-2 pickles from Python 3
    ("__builtin__", "list"): ("builtins", "list"),
    ("builtins", "list"): ("builtins", "list"),
}


def _resolve(module: str, name: str) -> Any:
    if module.startswith("numpy.core"):
        try:  # numpy >= 2 moved numpy.core to numpy._core
            return getattr(importlib.import_module("numpy._core" + module[10:]), name)
        except ImportError:
            pass
    return getattr(importlib.import_module(module), name)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy / scipy.sparse / collections names of Planetoid."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        target = _ALLOWED_NAMES.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return _resolve(*target)


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a Planetoid file (latin1 strings) with :class:`SafeUnpickler`.

    Raises:
        DataFileError: the file cannot be read, is not a pickle, or references a forbidden global.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        return SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # any failure on untrusted bytes becomes one clear message
        raise DataFileError(
            f"cannot read Planetoid file {path} ({type(exc).__name__}: {exc}): replace it with the "
            "upstream file (delete it to re-download)"
        ) from None


def load_planetoid(
    name: str = "cora", *, data_dir: str | os.PathLike | None = None, download: bool = True
) -> Data:
    """Load Cora or CiteSeer with the standard Planetoid public split.

    Args:
        name: ``"cora"`` or ``"citeseer"`` (any case).
        data_dir: folder searched first (see :func:`data_search_path`).
        download: fetch missing files from the Planetoid repository (checksums verified).

    Returns:
        ``Data`` with x float32 (N, F) binary bag of words as stored, y int64 (N,), edge_index
        (2, E) undirected (both directions), no self loops, deduplicated; train_mask (first
        20 per class = the rows of ``ind.*.y``), val_mask (the next 500), test_mask
        (``test.index``); plus ``num_classes`` and ``name``. CiteSeer's isolated test nodes
        (missing from ``test.index``) get zero features and label 0, like the reference reader;
        they lie in no mask.

    Raises:
        DataFileError: missing, corrupt or inconsistent files.
        InputError: unknown name.
    """
    from torch_geometric.data import Data  # imported here: torch_geometric is slow to import

    spec = planetoid_spec(name)
    paths = {
        key: locate(spec, f"ind.{spec.key}.{key}", data_dir=data_dir, download=download)
        for key in PLANETOID_KEYS
    }
    arr = {
        key: _matrix(safe_load_pickle(paths[key]), paths[key])
        for key in ("x", "y", "tx", "ty", "allx", "ally")
    }
    graph = safe_load_pickle(paths["graph"])
    test_index = _read_index(paths["test.index"])
    _check_shapes(arr, test_index, spec.num_classes, paths["x"].parent)

    sorted_index = np.sort(test_index)
    span = int(sorted_index[-1] - sorted_index[0] + 1)
    tx, ty = arr["tx"], arr["ty"]
    if span > len(tx):  # CiteSeer: isolated test nodes have no row, pad with zeros
        tx = _pad_rows(tx, sorted_index - sorted_index[0], span)
        ty = _pad_rows(ty, sorted_index - sorted_index[0], span)
    features = np.vstack([arr["allx"], tx]).astype(np.float32)
    onehot = np.vstack([arr["ally"], ty])
    features[test_index] = features[sorted_index]
    onehot[test_index] = onehot[sorted_index]
    num_nodes = len(features)

    edge_index = _edges(graph, num_nodes, paths["graph"])
    n_train = len(arr["y"])
    masks = {}
    for key, index in (
        ("train_mask", np.arange(n_train)),
        ("val_mask", np.arange(n_train, n_train + NUM_VAL)),
        ("test_mask", test_index),
    ):
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[torch.from_numpy(index)] = True
        masks[key] = mask
    data = Data(
        x=torch.from_numpy(features),
        edge_index=edge_index,
        y=torch.from_numpy(onehot.argmax(axis=1).astype(np.int64)),
        **masks,
    )
    data.num_classes = spec.num_classes
    data.name = spec.title
    return data


def _matrix(obj: Any, path: Path) -> np.ndarray:
    if sp.issparse(obj):
        return np.asarray(obj.toarray())
    if isinstance(obj, np.ndarray) and obj.ndim == 2:
        return obj
    raise DataFileError(
        f"{path} holds a {type(obj).__name__}, expected a 2-D matrix: "
        "replace it with the upstream file"
    )


def _read_index(path: Path) -> np.ndarray:
    try:
        values = [int(line) for line in path.read_text().split()]
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path} is not a list of integers ({exc}): replace it") from None
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise DataFileError(f"{path}: test indices are empty, negative or repeated: replace it")
    return np.asarray(values, dtype=np.int64)


def _check_shapes(arr: dict, test_index: np.ndarray, num_classes: int, folder: Path) -> None:
    pairs = (("x", "y"), ("tx", "ty"), ("allx", "ally"))
    widths = {arr[a].shape[1] for a, _ in pairs}
    classes = {arr[b].shape[1] for _, b in pairs}
    rows_ok = all(len(arr[a]) == len(arr[b]) for a, b in pairs)
    if (
        len(widths) != 1
        or classes != {num_classes}
        or not rows_ok
        or len(test_index) != len(arr["tx"])
    ):
        shapes = {k: v.shape for k, v in arr.items()}
        raise DataFileError(
            f"Planetoid files in {folder} are inconsistent: shapes {shapes}, "
            f"{len(test_index)} test indices, {num_classes} classes expected: "
            "replace them with the upstream files"
        )


def _pad_rows(matrix: np.ndarray, rows: np.ndarray, total: int) -> np.ndarray:
    out = np.zeros((total, matrix.shape[1]), dtype=matrix.dtype)
    out[rows] = matrix
    return out


def _edges(graph: Any, num_nodes: int, path: Path) -> torch.Tensor:
    if not isinstance(graph, dict):
        raise DataFileError(f"{path} holds a {type(graph).__name__}, expected a dict: replace it")
    try:
        pairs = [(int(u), int(v)) for u, nbrs in graph.items() for v in nbrs]
    except (TypeError, ValueError) as exc:
        raise DataFileError(
            f"{path}: adjacency lists are not integers ({exc}): replace it"
        ) from None
    edge_index = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise DataFileError(
            f"{path}: edges reference node {int(edge_index.max())}, but there are {num_nodes} "
            "nodes: the graph and feature files do not match"
        )
    from torch_geometric.utils import remove_self_loops, to_undirected

    edge_index, _ = remove_self_loops(edge_index)
    return to_undirected(edge_index, num_nodes=num_nodes)
