"""The training loop: learning, schedule, seeding, callbacks, exact resume, run files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from leafscope.errors import CheckpointError, InputError
from leafscope.models import build_model
from leafscope.training import Callback, fit, list_checkpoints, load_checkpoint


def blobs(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs in 16 dims shaped (n, 1, 4, 4), separable by a hyperplane."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centers = torch.randn(2, 16, generator=g) * 2.0
    x = centers[y] + 0.5 * torch.randn(n, 16, generator=g)
    return x.reshape(n, 1, 4, 4), y


def mlp(seed: int = 0, dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", num_classes=2, image_size=4, hidden=[8], dropout=dropout)


class Recorder(Callback):
    """Counts steps and sums losses; checkpointable."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.loss_sum = 0.0
        self.epochs: list[int] = []
        self.fail_at = fail_at

    def on_batch_end(self, step, model, optimizer, loss) -> None:
        self.steps.append(step)
        self.loss_sum += loss
        if step == self.fail_at:
            raise KeyboardInterrupt("simulated kill")

    def on_epoch_end(self, epoch, model, record) -> None:
        self.epochs.append(epoch)

    def state_dict(self) -> dict:
        return {"steps": list(self.steps), "loss_sum": self.loss_sum, "epochs": list(self.epochs)}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.loss_sum = list(state["steps"]), state["loss_sum"]
        self.epochs = list(state["epochs"])


def test_training_reduces_loss_on_separable_data() -> None:
    x, y = blobs()
    model = mlp()
    result = fit(
        model,
        (x[:160], y[:160]),
        (x[160:], y[160:]),
        epochs=5,
        lr=0.1,
        batch_size=16,
        momentum=0.9,
        progress=False,
    )
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["val_accuracy"] == 1.0
    assert result.stopped_reason == "epochs"
    assert result.steps == 5 * 10
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]


def test_adam_step_schedule_and_step_cap() -> None:
    x, y = blobs()
    result = fit(
        mlp(),
        (x, y),
        None,
        epochs=3,
        optimizer="adam",
        lr=0.01,
        lr_step=1,
        lr_gamma=0.5,
        max_steps_per_epoch=4,
        progress=False,
    )
    assert [r["lr"] for r in result.history] == pytest.approx([0.01, 0.005, 0.0025])
    assert result.steps == 12
    assert result.history[0]["val_accuracy"] is None


def test_seed_fixes_the_run_and_dataset_input_matches_tensors() -> None:
    x, y = blobs()
    runs = []
    for data, seed in (((x, y), 0), (TensorDataset(x, y), 0), ((x, y), 1)):
        model = mlp(dropout=0.3)
        fit(model, data, None, epochs=2, lr=0.1, seed=seed, batch_size=32, progress=False)
        runs.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


def test_callbacks_run_after_optimizer_step() -> None:
    x, y = blobs(64)
    model = mlp()
    seen = {}

    class Spy(Callback):
        def on_train_begin(self, model, optimizer) -> None:
            seen["w0"] = model.fc1.weight.detach().clone()

        def on_batch_end(self, step, model, optimizer, loss) -> None:
            if step == 1:
                seen["w1"] = model.fc1.weight.detach().clone()
                seen["grad"] = model.fc1.weight.grad.clone()

    fit(model, (x, y), None, epochs=1, lr=0.5, batch_size=64, callbacks=[Spy()], progress=False)
    # After one plain SGD step the weights moved by exactly -lr * grad.
    torch.testing.assert_close(seen["w1"], seen["w0"] - 0.5 * seen["grad"])


@pytest.mark.parametrize(("optimizer", "fail_at"), [("sgd", 11), ("adam", 8)])
def test_interrupted_run_resumes_to_identical_weights(
    tmp_path: Path, optimizer: str, fail_at: int
) -> None:
    x, y = blobs()
    kwargs = dict(
        epochs=3,
        optimizer=optimizer,
        lr=0.05,
        momentum=0.0 if optimizer == "adam" else 0.9,
        weight_decay=1e-3,
        batch_size=20,
        lr_step=2,
        lr_gamma=0.5,
        seed=3,
        checkpoint_every_steps=3,
        progress=False,
        augment_rotation=15.0 if optimizer == "adam" else 0.0,  # augmentation resumes exactly too
    )
    data = ((x[:160], y[:160]), (x[160:], y[160:]))
    # 8 steps per epoch; interrupt mid-epoch (11) or right at an epoch's end (8).
    full_cb, full = Recorder(), mlp(dropout=0.2)
    reference = fit(full, *data, out_dir=tmp_path / "a", callbacks=[full_cb], **kwargs)

    with pytest.raises(KeyboardInterrupt):
        fit(
            mlp(dropout=0.2), *data, out_dir=tmp_path / "b", callbacks=[Recorder(fail_at)], **kwargs
        )
    resumed_cb, resumed = Recorder(), mlp(seed=99, dropout=0.2)  # other init: weights must load
    result = fit(
        resumed, *data, out_dir=tmp_path / "b", callbacks=[resumed_cb], resume=True, **kwargs
    )

    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in reference.history]
    assert resumed_cb.steps == full_cb.steps == list(range(1, 25))
    assert resumed_cb.epochs == [1, 2, 3]
    assert resumed_cb.loss_sum == pytest.approx(full_cb.loss_sum, rel=0, abs=0)
    names = [p.name for p in result.checkpoints]
    assert names == [p.name for p in reference.checkpoints]
    loaded = load_checkpoint(tmp_path / "b" / "epoch_0003.pt")
    for key, value in full.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_resume_refuses_other_settings_and_finished_run_is_kept(tmp_path: Path) -> None:
    x, y = blobs(64)
    fit(mlp(), (x, y), None, epochs=1, batch_size=16, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="batch_size was 16"):
        fit(
            mlp(),
            (x, y),
            None,
            epochs=2,
            batch_size=8,
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )
    again = fit(
        mlp(), (x, y), None, epochs=1, batch_size=16, out_dir=tmp_path, resume=True, progress=False
    )
    assert len(again.history) == 1 and again.steps == 4
    with pytest.raises(InputError, match="already holds checkpoints"):
        fit(mlp(), (x, y), None, epochs=1, out_dir=tmp_path, progress=False)
    fit(mlp(), (x, y), None, epochs=1, out_dir=tmp_path, overwrite=True, progress=False)


def test_run_files_and_target_accuracy(tmp_path: Path) -> None:
    x, y = blobs()
    result = fit(
        mlp(),
        (x[:160], y[:160]),
        (x[160:], y[160:]),
        epochs=20,
        lr=0.1,
        momentum=0.9,
        batch_size=16,
        target_val_accuracy=0.9,
        out_dir=tmp_path,
        progress=False,
        meta={"dataset": "blobs"},
    )
    assert result.stopped_reason == "target_val_accuracy"
    assert result.history[-1]["val_accuracy"] >= 0.9
    assert all(r["val_accuracy"] < 0.9 for r in result.history[:-1])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["history"] == json.loads(json.dumps(result.history))
    assert metrics["meta"] == {"dataset": "blobs"}
    assert (
        metrics["settings"]["momentum"] == 0.9
        and metrics["stopped_reason"] == result.stopped_reason
    )
    epochs = [i.epoch for i in list_checkpoints(tmp_path)]
    assert epochs == list(range(len(result.history) + 1))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_arguments_and_data_are_input_errors() -> None:
    x, y = blobs(32)
    cases = [
        (dict(epochs=0), "epochs"),
        (dict(epochs=1, lr=0.0), "learning rate"),
        (dict(epochs=1, optimizer="rmsprop"), "rmsprop"),
        (dict(epochs=1, momentum=1.5), "momentum"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            fit(mlp(), (x, y), None, progress=False, **kwargs)
    with pytest.raises(InputError, match="num_classes >= 6"):
        fit(mlp(), (x, y + 4), None, epochs=1, progress=False)
    with pytest.raises(InputError, match="floating point"):
        fit(mlp(), (x.long(), y), None, epochs=1, progress=False)
    with pytest.raises(InputError, match="32 inputs and 31 labels"):
        fit(mlp(), (x, y[:-1]), None, epochs=1, progress=False)
    with pytest.raises(InputError, match="diverged"):
        fit(mlp(), (x * float("nan"), y), None, epochs=1, progress=False)


def test_rotation_augmentation_changes_training_and_is_part_of_the_run(tmp_path: Path) -> None:
    x, y = blobs()
    kwargs = dict(epochs=1, batch_size=20, seed=0, progress=False)
    plain, rotated = mlp(), mlp()
    fit(plain, (x, y), **kwargs)
    fit(rotated, (x, y), augment_rotation=30.0, out_dir=tmp_path, **kwargs)
    assert not torch.equal(next(iter(plain.parameters())), next(iter(rotated.parameters())))
    with pytest.raises(CheckpointError, match="augment_rotation"):
        fit(mlp(), (x, y), out_dir=tmp_path, resume=True, **{**kwargs, "epochs": 2})
    with pytest.raises(InputError, match="augment_rotation"):
        fit(mlp(), (x, y), augment_rotation=-1.0, **kwargs)
