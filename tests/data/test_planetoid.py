"""Planetoid Cora / CiteSeer: published statistics, public split, safe unpickling."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from leafscope.data import load_planetoid, safe_load_pickle
from leafscope.errors import DataFileError, InputError


def _check_graph(data, nodes: int, features: int, classes: int, directed_edges: int) -> None:
    assert data.x.shape == (nodes, features) and data.x.dtype == torch.float32
    assert set(data.x.unique().tolist()) <= {0.0, 1.0}  # binary bag of words, as stored
    assert data.y.dtype == torch.int64 and int(data.y.max()) == classes - 1
    assert data.num_classes == classes
    ei = data.edge_index
    assert ei.shape == (2, directed_edges)
    assert not bool((ei[0] == ei[1]).any())  # no self loops
    keys = ei[0] * nodes + ei[1]
    assert keys.unique().numel() == directed_edges  # no duplicates
    reverse = ei[1] * nodes + ei[0]
    assert torch.equal(keys.sort().values, reverse.sort().values)  # both directions
    n_train = 20 * classes
    assert data.train_mask.nonzero().flatten().tolist() == list(range(n_train))
    assert data.val_mask.nonzero().flatten().tolist() == list(range(n_train, n_train + 500))
    assert int(data.test_mask.sum()) == 1000
    assert not bool(
        (data.train_mask & data.test_mask).any() | (data.val_mask & data.test_mask).any()
    )
    assert torch.bincount(data.y[data.train_mask]).tolist() == [20] * classes


def test_cora_published_stats(shared_data: Path) -> None:
    data = load_planetoid("cora")
    _check_graph(data, 2708, 1433, 7, 10556)  # 5278 undirected edges
    assert int((data.x.sum(1) == 0).sum()) == 0


def test_citeseer_published_stats_and_isolated_nodes(shared_data: Path) -> None:
    data = load_planetoid("CiteSeer")
    _check_graph(data, 3327, 3703, 6, 9104)
    padded = data.x.sum(1) == 0  # the 15 test nodes missing from test.index
    assert int(padded.sum()) == 15
    assert not bool((padded & (data.train_mask | data.val_mask | data.test_mask)).any())


def test_matches_pyg_reference_reader(shared_data: Path) -> None:
    io = pytest.importorskip("torch_geometric.io")
    from torch_geometric.utils import coalesce

    for name in ("cora", "citeseer"):
        ref = io.read_planetoid_data(str(shared_data / "planetoid"), name)
        ours = load_planetoid(name)
        for key in ("x", "y", "train_mask", "val_mask", "test_mask"):
            assert torch.equal(getattr(ref, key), getattr(ours, key)), (name, key)
        expected = coalesce(ref.edge_index, num_nodes=ours.num_nodes)
        assert torch.equal(expected, ours.edge_index), name


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_rejects_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "ind.cora.x"
    evil.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(DataFileError, match="not allowed"):
        safe_load_pickle(evil)
    assert not marker.exists()
    evil.write_bytes(pickle.dumps(eval, protocol=2))
    with pytest.raises(DataFileError, match="eval. is not allowed"):
        safe_load_pickle(evil)
    # a malicious file in the data folder is stopped by the checksum before unpickling
    (tmp_path / "planetoid").mkdir()
    (tmp_path / "planetoid" / "ind.cora.x").write_bytes(evil.read_bytes())
    with pytest.raises(DataFileError, match="23cfa55d91c6f624"):
        load_planetoid("cora", data_dir=tmp_path, download=False)


def test_unpickler_reads_numpy_and_scipy(tmp_path: Path) -> None:
    import numpy as np
    import scipy.sparse as sp

    path = tmp_path / "obj.pkl"
    matrix = sp.csr_matrix(np.eye(3, dtype=np.float32))
    path.write_bytes(pickle.dumps((matrix, np.arange(4)), protocol=2))
    loaded, arr = safe_load_pickle(path)
    assert (loaded.toarray() == np.eye(3)).all() and arr.tolist() == [0, 1, 2, 3]


def test_unknown_graph() -> None:
    with pytest.raises(InputError, match="pubmed"):
        load_planetoid("pubmed")
