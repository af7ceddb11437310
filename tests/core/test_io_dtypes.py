"""The one atomic writer (leafscope.io) and the one dtype convention (leafscope.dtypes)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import leafscope.io as io_mod
from leafscope.dtypes import DTYPES, check_dtype, dtype_from_name, dtype_name
from leafscope.errors import InputError
from leafscope.io import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    torch_save_atomic,
    write_json,
)


def test_each_writer_round_trips_and_creates_folders(tmp_path: Path) -> None:
    assert atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write_text(tmp_path / "t.txt", "λ\n").read_bytes() == "λ\n".encode()
    data = {"x": torch.arange(3), "d": torch.float64, "p": tmp_path}
    assert json.loads(write_json(tmp_path / "j.json", data).read_text()) == {
        "x": [0, 1, 2],
        "d": "float64",
        "p": str(tmp_path),
    }
    obj = {"w": torch.randn(2, 3)}
    back = torch.load(torch_save_atomic(tmp_path / "w.pt", obj), weights_only=True)
    assert torch.equal(back["w"], obj["w"])
    atomic_write(tmp_path / "z.npz", lambda f: np.savez(f, a=np.arange(4)))
    assert np.load(tmp_path / "z.npz")["a"].tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "j.json", "t.txt", "w.pt", "z.npz"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_new_files_get_default_permissions_not_0600(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "f.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_file_and_folder_are_fsynced(tmp_path: Path, monkeypatch) -> None:
    synced = []
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(io_mod.os, "fsync", record)
    atomic_write_bytes(tmp_path / "f.bin", b"abc")
    assert synced[0] is False  # the data file, before the rename
    if sys.platform != "win32":
        assert synced[-1] is True  # then its folder, so the rename itself is durable


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "f.bin", b"old")

    def broken(handle) -> None:
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_dtype_names_only_at_the_boundary() -> None:
    assert dtype_from_name("float32") is torch.float32
    assert dtype_from_name(torch.float64) is torch.float64
    assert {dtype_name(d) for d in DTYPES.values()} == set(DTYPES)
    assert check_dtype(torch.float64) is torch.float64
    with pytest.raises(InputError, match="unknown dtype 'half': use one of float32, float64"):
        dtype_from_name("half")
    with pytest.raises(InputError, match=r"pass torch\.float32"):
        check_dtype("float32")
    with pytest.raises(InputError, match="torch.float32 or torch.float64"):
        check_dtype(torch.int64)
