"""``--device`` for the benchmark scripts: cpu (default) or cuda[:N], with one clear error when
CUDA is asked for and absent, and a synchronising timer (CUDA kernels run asynchronously)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from leafscope.cli.common import resolve_device
from leafscope.errors import LeafscopeError

T = TypeVar("T")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (default ``cpu``; ``cuda`` or ``cuda:N`` when asked)."""
    parser.add_argument(
        "--device", default="cpu", help="cpu (default) or cuda[:N]; cuda must be available"
    )


def parse_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """``name`` as a ``torch.device``; exits through ``parser.error`` (status 2, one line) for an
    unknown name or for CUDA on a machine without it."""
    if name == "auto":
        parser.error("--device auto is not accepted by the benchmarks: pass cpu or cuda")
    try:
        return resolve_device(name)
    except LeafscopeError as exc:
        from leafscope.cli.main import as_flags

        parser.error(as_flags(str(exc), parser))
        raise  # parser.error exits; this keeps type checkers quiet


def sync(device: torch.device | str) -> None:
    """Wait for the queued kernels of ``device`` (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device | str = "cpu") -> tuple[T, float]:
    """``fn()`` and its wall time in seconds, the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def describe(device: torch.device | str) -> str:
    """One line naming the device (the GPU's model and memory for CUDA)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"device cpu, torch threads {torch.get_num_threads()}"
    props = torch.cuda.get_device_properties(device)
    return (
        f"device {device} ({props.name}, {props.total_memory / 1024**3:.0f} GiB), "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    )
