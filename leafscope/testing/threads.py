"""A pytest fixture body for test modules whose tiny models run faster on one torch thread."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def one_torch_thread() -> Iterator[None]:
    """Run the enclosed tests with ``torch.set_num_threads(1)``, then restore the count.

    Tiny models are slower with more threads on a shared 2-core machine (thread contention);
    results do not depend on it. Use as ``pytest.fixture(autouse=True, scope="module")(...)``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
