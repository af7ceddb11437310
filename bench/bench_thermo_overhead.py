"""Overhead of the TemperatureMonitor on a LeNet-5 / MNIST training step (issue 6).

Times the same SGD step (forward, backward, optimizer.step) without a monitor, with a monitor
on conv1's filters, and with a monitor on every layer (conv filters + linear neurons, 61.7k
parameters), interleaving the three in rounds so that load from other processes hits all
alike. Reports the median step time of each and the ratio to the plain step.

    PYTHONPATH=. .venv/bin/python bench/bench_thermo_overhead.py [--steps 200 --rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from leafscope.models import build_model
from leafscope.thermo import TemperatureMonitor


def _batches(batch_size: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    try:
        from leafscope.data.images import load_images

        data = load_images("mnist", "train", download=False)
        x, y = data.images[: batch_size * n], data.labels[: batch_size * n]
    except Exception:  # no MNIST here: random images time the same
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(batch_size * n, 1, 28, 28, generator=gen)
        y = torch.randint(0, 10, (batch_size * n,), generator=gen)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def _time_steps(model, optimizer, batches, monitor) -> tuple[float, float]:
    """Seconds per step: whole step, and the monitor's own share (timed around its calls)."""
    own = 0.0
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if monitor is not None:
            t0 = time.perf_counter()
            monitor.step()
            own += time.perf_counter() - t0
    if monitor is not None:
        t0 = time.perf_counter()
        monitor.end_epoch()
        monitor.temperatures()  # reading the result is part of the cost
        own += time.perf_counter() - t0
    return (time.perf_counter() - start) / len(batches), own / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("lenet")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = _batches(args.batch_size, args.steps)
    setups = {
        "no monitor": None,
        "monitor conv1 filters": TemperatureMonitor({"conv1": "filters"}),
        "monitor all layers (+trace)": TemperatureMonitor(snapshot="step", downsample=10),
    }
    for monitor in setups.values():
        if monitor is not None:
            monitor.attach(model, optimizer)
    _time_steps(model, optimizer, batches[:20], None)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in setups}
    own: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, monitor in setups.items():
            if monitor is not None:
                monitor.attach(model, optimizer)  # restart velocity from the current weights
            total, mine = _time_steps(model, optimizer, batches, monitor)
            times[name].append(total)
            own[name].append(mine)
    base = statistics.median(times["no monitor"])
    print(
        f"LeNet-5, MNIST batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"{'setup':30s} {'median ms/step':>15s} {'ratio':>7s} {'monitor ms/step':>16s} "
        f"{'monitor / plain step':>21s}"
    )
    for name, values in times.items():
        med, mine = statistics.median(values), statistics.median(own[name])
        print(
            f"{name:30s} {1000 * med:15.3f} {med / base:7.3f} {1000 * mine:16.4f} "
            f"{100 * mine / base:20.2f}%"
        )


if __name__ == "__main__":
    main()
