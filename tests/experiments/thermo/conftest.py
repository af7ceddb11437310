"""One torch thread for the thermo tests: the tiny models here are slower with more threads on a
shared 2-core machine (thread contention), and results do not depend on it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
