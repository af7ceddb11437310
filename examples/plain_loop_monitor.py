"""The temperature monitor and channel-wise early stopping inside your own PyTorch loop.

Run: python examples/plain_loop_monitor.py [--epochs 4]

leafscope's training hooks need three calls in any loop: ``on_train_begin`` once, ``on_batch_end``
after each ``optimizer.step()`` and ``on_epoch_end`` after each epoch. The data are synthetic
(stripes whose orientation is the class), so the script needs no files.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from leafscope.nnk import ChannelEarlyStopping
from leafscope.thermo import TemperatureMonitor


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 12, 12) images: horizontal (class 0) or vertical (class 1) stripes plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    stripes = (torch.arange(12) % 4 < 2).float()
    x = 0.5 * torch.rand(n, 1, 12, 12, generator=g)
    x[y == 0] += 0.5 * stripes[:, None]
    x[y == 1] += 0.5 * stripes[None, :]
    return x.clamp(0, 1), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y = make_data(256, seed=0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    monitor = TemperatureMonitor(groups={"0": "filters"})
    stopper = ChannelEarlyStopping("1", x[:128], y[:128], param_layer="0", patience=1, k=10)
    hooks = [monitor, stopper]
    for hook in hooks:
        hook.on_train_begin(model, opt)
    step = 0
    for epoch in range(1, args.epochs + 1):
        for start in range(0, len(x), 32):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[start : start + 32]), y[start : start + 32])
            loss.backward()
            opt.step()
            step += 1
            for hook in hooks:
                hook.on_batch_end(step, model, opt, loss.item())
        record: dict = {}
        for hook in hooks:
            hook.on_epoch_end(epoch, model, record)
        temps = monitor.temperatures(window=1)["0"].tolist()
        print(
            f"epoch {epoch}: loss {loss.item():.4f}; filter temperatures "
            + ", ".join(f"{t:.2e}" for t in temps)
            + f"; channel LOO errors {[round(e, 3) for e in record['channel_loo_error']]}"
            + f"; frozen {record['channels_frozen']}/4"
        )
        if stopper.rule.all_frozen:
            print(f"every channel frozen: stop after epoch {epoch} (no validation data used)")
            break


if __name__ == "__main__":
    main()
