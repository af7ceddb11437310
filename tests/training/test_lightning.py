"""The Lightning adapters record what a plain loop records, step for step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from leafscope.errors import InputError  # noqa: E402
from leafscope.thermo import TemperatureMonitor  # noqa: E402
from leafscope.training.checkpoint import read_checkpoint  # noqa: E402
from leafscope.training.lightning import LeafscopeCallback, StepCheckpoint  # noqa: E402


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(48, 1, 8, 8, generator=g), torch.randint(0, 4, (48,), generator=g)


class _Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = _net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)


def _plain_loop(epochs: int, monitor: TemperatureMonitor) -> list[dict[str, torch.Tensor]]:
    """The same training by hand, with the monitor's hooks; weights after each step."""
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _data()
    monitor.on_train_begin(model, opt)
    weights = []
    for epoch in range(1, epochs + 1):
        for start in range(0, len(x), 16):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[start : start + 16]), y[start : start + 16])
            loss.backward()
            opt.step()
            monitor.on_batch_end(len(weights) + 1, model, opt, loss.item())
            weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        monitor.on_epoch_end(epoch, model, {})
    return weights


def test_lightning_monitor_and_step_checkpoints_match_a_plain_loop(tmp_path):
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    monitor = TemperatureMonitor()
    ckpt = StepCheckpoint(tmp_path / "run", every_n_steps=2, model_attribute="model")
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[LeafscopeCallback(monitor, model_attribute="model"), ckpt],
    )  # fmt: skip
    trainer.fit(_Module(), loader)

    reference = TemperatureMonitor()
    weights = _plain_loop(2, reference)
    got, want = monitor.temperatures(window=None), reference.temperatures(window=None)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-12)
        assert float(want[name].sum()) > 0

    assert [p.name for p in ckpt.written] == [f"step_{s:08d}.pt" for s in (2, 4, 6)]
    saved = read_checkpoint(ckpt.written[1])
    assert saved["step"] == 4
    for key, value in weights[3].items():
        torch.testing.assert_close(saved["model_state"][key], value, rtol=1e-5, atol=1e-7)


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="every_n_steps"):
        StepCheckpoint("x", every_n_steps=0)
    with pytest.raises(InputError, match="leafscope.training.Callback"):
        LeafscopeCallback(object())
