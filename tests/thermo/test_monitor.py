"""TemperatureMonitor: hand computations on toy optimizer traces."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leafscope.errors import InputError, NotFittedError
from leafscope.thermo import TemperatureHistory, TemperatureMonitor


def _toy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(16, 1, 6, 6, generator=gen), torch.randint(0, 2, (16,), generator=gen)


def _train(model, optimizer, monitor, epochs=2, steps=3, record_grads=False):
    x, y = _batch()
    grads = []
    for _ in range(epochs):
        for _ in range(steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if record_grads:
                grads.append([p.grad.clone() for p in model[0].parameters()])
            optimizer.step()
            monitor.step()
        monitor.end_epoch()
    return grads


def test_temperature_equals_hand_computation_on_a_fixed_trace():
    """Parameters moved by hand: T = (1/d) Σ ½ Δw², averaged over steps."""
    layer = nn.Linear(3, 2)
    model = nn.Sequential(layer)
    monitor = TemperatureMonitor(groups={"0": "neurons"})
    monitor.attach(model)
    deltas = [torch.tensor([[0.1, 0.0, -0.2], [0.0, 0.3, 0.0]]), torch.full((2, 3), 0.05)]
    bias_deltas = [torch.tensor([0.2, 0.0]), torch.tensor([-0.1, 0.4])]
    for dw, db in zip(deltas, bias_deltas, strict=True):
        with torch.no_grad():
            layer.weight += dw
            layer.bias += db
        monitor.step()
    # neuron 0: step 1: ½(0.01+0.04+0.04)/4 ; step 2: ½(3·0.0025+0.01)/4
    t0 = (0.5 * 0.09 / 4 + 0.5 * (0.0075 + 0.01) / 4) / 2
    t1 = (0.5 * 0.09 / 4 + 0.5 * (0.0075 + 0.16) / 4) / 2
    got = monitor.temperatures()["0"]
    torch.testing.assert_close(
        got, torch.tensor([t0, t1], dtype=torch.float64), atol=1e-8, rtol=1e-5
    )


def test_plain_sgd_velocity_is_minus_lr_times_gradient():
    model = _toy()
    lr = 0.1
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    monitor = TemperatureMonitor(groups={"0": "filters"}, snapshot="step", downsample=1)
    monitor.attach(model, opt)
    grads = _train(model, opt, monitor, epochs=1, steps=4, record_grads=True)
    hist = monitor.history()
    for (gw, gb), traced in zip(grads, hist.trace["0"], strict=True):
        expected = 0.5 * ((lr * gw) ** 2).sum(dim=(1, 2, 3)) + 0.5 * (lr * gb) ** 2
        expected = expected / 10  # d = 9 weights + 1 bias
        torch.testing.assert_close(
            torch.tensor(traced, dtype=torch.float64), expected.double(), rtol=1e-3, atol=1e-12
        )
    assert hist.optimizer["name"] == "SGD" and hist.optimizer["lr"] == lr


def test_momentum_velocity_is_not_minus_lr_times_gradient_but_actual_change():
    model = _toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    monitor = TemperatureMonitor(groups={"0": "filters"}, snapshot="step", downsample=1)
    monitor.attach(model, opt)
    x, y = _batch()
    naive, actual = [], []
    for _ in range(5):
        before = [p.detach().clone() for p in model[0].parameters()]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        gw, gb = (p.grad.clone() for p in model[0].parameters())
        opt.step()
        monitor.step()
        dw, db = (p.detach() - b for p, b in zip(model[0].parameters(), before, strict=True))
        actual.append((0.5 * dw.square().sum(dim=(1, 2, 3)) + 0.5 * db.square()) / 10)
        naive.append((0.5 * (0.1 * gw).square().sum(dim=(1, 2, 3)) + 0.5 * (0.1 * gb) ** 2) / 10)
    trace = torch.tensor(monitor.history().trace["0"], dtype=torch.float64)
    torch.testing.assert_close(trace, torch.stack(actual).double(), rtol=1e-5, atol=1e-14)
    # after a few momentum steps the actual step is much larger than -lr * grad
    assert (trace[-1] / torch.stack(naive)[-1].double()).min() > 1.5


def test_epoch_averages_window_and_downsampled_trace():
    model = _toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = TemperatureMonitor(
        groups={"0": "filters", "3": "neurons"}, snapshot="step", downsample=2
    )
    monitor.attach(model, opt)
    _train(model, opt, monitor, epochs=3, steps=4)
    hist = monitor.history()
    assert hist.steps_per_epoch == [4, 4, 4]
    assert hist.trace_steps == [2, 4, 6, 8, 10, 12]
    per_epoch = torch.tensor(hist.epoch_temperatures["0"], dtype=torch.float64)
    trace = torch.tensor(hist.trace["0"], dtype=torch.float64)
    # each epoch average is the mean of its two trace blocks
    torch.testing.assert_close(per_epoch, trace.reshape(3, 2, -1).mean(1))
    torch.testing.assert_close(monitor.temperatures(window=1)["0"], per_epoch[-1])
    torch.testing.assert_close(monitor.temperatures(window=None)["0"], per_epoch.mean(0))
    assert monitor.temperatures()["3"].shape == (2,)


def test_epoch_velocity_uses_displacement_over_the_epoch():
    model = _toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = TemperatureMonitor(groups={"0": "filters"}, velocity="epoch")
    monitor.attach(model, opt)
    start = [p.detach().clone() for p in model[0].parameters()]
    _train(model, opt, monitor, epochs=1, steps=4)
    dw, db = ((p.detach() - s) / 4 for p, s in zip(model[0].parameters(), start, strict=True))
    expected = (0.5 * dw.square().sum(dim=(1, 2, 3)) + 0.5 * db.square()) / 10
    torch.testing.assert_close(monitor.temperatures()["0"], expected.double(), rtol=1e-4, atol=0)


def test_state_dict_round_trip_and_json():
    model = _toy()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    monitor = TemperatureMonitor(groups={"0": "filters"}, window=1)
    monitor.attach(model, opt)
    _train(model, opt, monitor, epochs=2, steps=2)
    restored = TemperatureMonitor()
    restored.load_state_dict(monitor.state_dict())
    restored.attach(model, opt)
    torch.testing.assert_close(restored.temperatures()["0"], monitor.temperatures()["0"])
    hist = TemperatureHistory.from_json(monitor.history().to_json())
    assert hist.optimizer["name"] == "Adam"
    torch.testing.assert_close(hist.temperatures(1)["0"], monitor.temperatures()["0"])


def test_works_as_a_training_callback():
    model = _toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = TemperatureMonitor(groups={"0": "filters"})
    monitor.on_train_begin(model, opt)
    x, y = _batch()
    for step in range(1, 4):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        monitor.on_batch_end(step, model, opt, float(loss.detach()))
    monitor.on_epoch_end(1, model, {})
    assert monitor.history().steps_per_epoch == [3]
    assert (monitor.temperatures()["0"] > 0).all()


def test_bad_inputs_give_clear_errors():
    model = _toy()
    with pytest.raises(InputError, match="unknown layer 'conv9'.*\\['0', '3'\\]"):
        TemperatureMonitor(groups={"conv9": "filters"}).attach(model)
    with pytest.raises(InputError, match="unknown group kind"):
        TemperatureMonitor(groups={"0": "channels"})
    with pytest.raises(InputError, match="not a convolution"):
        TemperatureMonitor(groups={"3": "filters"}).attach(model)
    with pytest.raises(InputError, match="window"):
        TemperatureMonitor(window=0)
    with pytest.raises(NotFittedError):
        TemperatureMonitor().step()
