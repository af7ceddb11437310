"""The ``cuda`` marker: a test marked ``@pytest.mark.cuda`` is skipped when torch sees no CUDA
device (``pytest -m cuda`` runs only those, e.g. on a GPU machine by ``bench/gpu_check.sh``)."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
