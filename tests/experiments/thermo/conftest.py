"""One torch thread for these tests (see :func:`leafscope.testing.threads.one_torch_thread`)."""

import pytest

from leafscope.testing.threads import one_torch_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
