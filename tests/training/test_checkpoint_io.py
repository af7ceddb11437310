"""Checkpoint files: atomic save, safe load, clear errors, run listing and selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import leafscope.models.checkpoint as ckpt_mod
from leafscope.errors import CheckpointError, InputError
from leafscope.models import build_model
from leafscope.training import (
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    select_checkpoint,
)


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", num_classes=3, image_size=4, hidden=[5])


def test_round_trip_gives_equal_model_in_eval_mode(tmp_path: Path) -> None:
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(4, 1, 4, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / "a.pt", model=model, optimizer=opt, epoch=2, step=7, history=[{"epoch": 1}]
    )
    loaded = load_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    x = torch.rand(3, 1, 4, 4)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    raw = torch.load(path, weights_only=True)  # plain content only
    assert (raw["epoch"], raw["step"], raw["history"]) == (2, 7, [{"epoch": 1}])
    assert raw["optimizer_state"]["param_groups"][0]["momentum"] == 0.9


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    model = small_model()
    path = save_checkpoint(tmp_path / "c.pt", model=model, epoch=1, step=1, history=[])
    before = path.read_bytes()

    def broken_save(obj, handle) -> None:
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with torch.no_grad():
        model.fc1.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=model, epoch=2, step=2, history=[])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt_mod.FORMAT, "config": None, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(path)
    assert not marker.exists()


def test_bad_files_give_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "missing.pt")
    good = save_checkpoint(tmp_path / "g.pt", model=small_model(), epoch=0, step=0, history=[])
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    noise = tmp_path / "n.pt"
    noise.write_bytes(b"\x00\x01not a torch file" * 10)
    foreign = tmp_path / "f.pt"
    torch.save({"w": torch.zeros(2)}, foreign)
    for path in (truncated, noise):
        with pytest.raises(CheckpointError, match=str(path.name)):
            read_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a leafscope checkpoint"):
        read_checkpoint(foreign)


def test_unknown_model_and_mismatched_weights(tmp_path: Path) -> None:
    model = small_model()
    model.config = {**model.config, "name": "transformer"}
    path = save_checkpoint(tmp_path / "u.pt", model=model, epoch=0, step=0, history=[])
    with pytest.raises(CheckpointError, match="unknown model 'transformer'"):
        load_checkpoint(path)
    model = small_model()
    model.config = build_model("lenet").config
    path = save_checkpoint(tmp_path / "m.pt", model=model, epoch=0, step=0, history=[])
    with pytest.raises(CheckpointError, match="do not fit model 'lenet'"):
        load_checkpoint(path)
    plain = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "p.pt", model=plain, epoch=0, step=0, history=[])
    with pytest.raises(CheckpointError, match="no model config"):
        load_checkpoint(path)
    assert torch.equal(read_checkpoint(path)["model_state"]["weight"], plain.weight)


def test_non_plain_extra_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="extra"):
        save_checkpoint(
            tmp_path / "x.pt",
            model=small_model(),
            epoch=0,
            step=0,
            history=[],
            extra={"when": object()},
        )
    assert not list(tmp_path.iterdir())


def fake_run(run: Path, accuracies: list[float]) -> None:
    model, history = small_model(), []
    for epoch, acc in enumerate(accuracies):
        if epoch:
            history.append({"epoch": epoch, "val_accuracy": acc})
        extra = {"val_accuracy": acc} if epoch == 0 else {}
        save_checkpoint(
            run / f"epoch_{epoch:04d}.pt",
            model=model,
            epoch=epoch,
            step=10 * epoch,
            history=history,
            extra=extra,
        )
    save_checkpoint(
        run / "step_00000015.pt",
        model=model,
        epoch=1,
        step=15,
        history=history[:1],
        extra={"batch_in_epoch": 5},
    )


def test_list_and_select_checkpoints(tmp_path: Path) -> None:
    fake_run(tmp_path, [0.1, 0.5, 0.8, 0.9, 0.95])
    infos = list_checkpoints(tmp_path)
    assert [i.step for i in infos] == [0, 10, 15, 20, 30, 40]
    assert [i.val_accuracy for i in infos] == [0.1, 0.5, None, 0.8, 0.9, 0.95]
    assert select_checkpoint(tmp_path, max_val_accuracy=0.85).name == "epoch_0002.pt"
    assert select_checkpoint(tmp_path, max_val_accuracy=0.5).name == "epoch_0001.pt"
    assert select_checkpoint(tmp_path, epoch=3).name == "epoch_0003.pt"
    assert select_checkpoint(tmp_path).name == "epoch_0004.pt"
    with pytest.raises(CheckpointError, match="raise the target"):
        select_checkpoint(tmp_path, max_val_accuracy=0.05)
    with pytest.raises(CheckpointError, match=r"epochs saved \[0, 1, 2, 3, 4\]"):
        select_checkpoint(tmp_path, epoch=7)
    with pytest.raises(InputError):
        select_checkpoint(tmp_path, epoch=1, max_val_accuracy=0.5)
    with pytest.raises(CheckpointError, match="does not exist"):
        list_checkpoints(tmp_path / "nope")
