"""read_checkpoint on files that are no checkpoint at all, versus pickles that could run code."""

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from leafscope.errors import CheckpointError
from leafscope.models import build_model
from leafscope.training import load_checkpoint, read_checkpoint, save_checkpoint


def _files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "random.pt": os.urandom(4096),
        "notes.pt": b"epoch 3: loss 0.12\nthis is a text file\n",
        "empty.pt": b"",
        "pickle.pt": pickle.dumps({"weights": [1.0, 2.0]}),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "archive.pt", "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return {name: tmp_path / name for name in [*files, "archive.pt"]}


def test_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    for name, path in _files(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert name in message and "is not a leafscope checkpoint, nor any torch file" in message
        assert "could run code" not in message
        assert "\n" not in message
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="zip archive without the data.pkl"):
        read_checkpoint(tmp_path / "archive.pt")


def test_pickles_with_code_are_refused_in_both_torch_formats(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for zipped in (True, False):
        path = tmp_path / f"evil_{zipped}.pt"
        torch.save({"payload": Evil()}, path, _use_new_zipfile_serialization=zipped)
        with pytest.raises(CheckpointError, match="could run code"):
            read_checkpoint(path)
    assert not marker.exists()


def test_real_checkpoints_still_load_and_truncated_ones_are_named(tmp_path: Path) -> None:
    model = build_model("mlp", hidden=(8,), num_classes=3, image_size=4)
    good = save_checkpoint(tmp_path / "good.pt", model=model, epoch=1, step=2, history=[])
    loaded = load_checkpoint(good)
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters(), strict=True)
    )
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="cut.pt") as info:
        read_checkpoint(cut)
    assert "nor any torch file" not in str(info.value)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="torch file but not a leafscope checkpoint"):
        read_checkpoint(legacy)
