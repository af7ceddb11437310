"""Helpers shared by the command modules: device choice, atomic JSON output."""

from __future__ import annotations

import argparse

import torch

from leafscope.errors import InputError
from leafscope.io import write_json

__all__ = ["add_device_argument", "resolve_device", "write_json"]


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (``auto`` = CUDA when present, else CPU)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (CUDA when available, else cpu), cpu, cuda or cuda:N",
    )


def resolve_device(name: str) -> torch.device:
    """Turn a ``--device`` value into a ``torch.device``; never requires CUDA unless asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown --device {name!r}: use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name} asked for CUDA but none is available: use --device cpu")
    return device
