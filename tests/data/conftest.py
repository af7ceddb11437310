"""Fixtures for the data tests: the shared data folder, an isolated cache and search path."""

from __future__ import annotations

from pathlib import Path

import pytest

from leafscope.data import search


def _find_shared() -> Path | None:
    for root in search._shared_roots():
        if (root / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file():
            return root
    return None


SHARED = _find_shared()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every data test writes its cache under tmp_path and ignores the user's LEAFSCOPE_DATA."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("LEAFSCOPE_DATA", raising=False)
    return tmp_path / "xdg-cache" / "leafscope"


@pytest.fixture
def shared_data() -> Path:
    """The shared/data folder with the real files (skips the test when absent)."""
    if SHARED is None:
        pytest.skip("shared/data (real MNIST / Planetoid files) not found")
    return SHARED


@pytest.fixture
def no_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide shared/data from the search path (so files count as missing)."""
    monkeypatch.setattr(search, "_shared_roots", lambda: [])


@pytest.fixture
def unverified(monkeypatch: pytest.MonkeyPatch):
    """Test-only: drop the checksums of a built-in set, so fabricated files in the upstream layout
    are read. Call ``unverified("cifar10")``; users always get the check."""
    from dataclasses import replace

    from leafscope.data import registry
    from leafscope.data.registry import FileSpec

    def drop(key: str) -> None:
        spec = registry.IMAGE_DATASETS[key]
        files = {name: FileSpec(name) for name in spec.files}
        monkeypatch.setitem(registry.IMAGE_DATASETS, key, replace(spec, files=files))

    return drop
