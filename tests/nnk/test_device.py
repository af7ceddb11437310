"""The NNK commands' ``device`` reaches the NNK solves (their CUDA runs: tests/test_cuda.py).

On any machine: ``device="cpu"`` passed explicitly gives the default's results, and a device
other than the default (``"cpu:0"``, the same CPU under another name) arrives at every graph
fit and every polytope solve, so a ``--device cuda`` would too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leafscope.nnk import invariance
from leafscope.nnk.geometry import layer_geometry, mgm_summary
from leafscope.nnk.graph import NNKGraph, solve_nnk_chunk
from leafscope.nnk.invariance import rotation_invariance
from leafscope.nnk.stability import geometric_stability
from leafscope.nnk.stopping import channel_loo_errors
from leafscope.testing import tiny_cnn


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.arange(30) % 3


@pytest.fixture
def fit_devices(monkeypatch) -> list[str]:
    """The ``device`` of every NNKGraph fitted while the test runs."""
    seen: list[str] = []
    fit = NNKGraph.fit

    def spy(self, X, executor=None):
        seen.append(self.device)
        return fit(self, X, executor)

    monkeypatch.setattr(NNKGraph, "fit", spy)
    return seen


def _runs(images, labels, device=None):
    kw = {} if device is None else {"device": device}
    models = [tiny_cnn(seed=0), tiny_cnn(seed=1)]
    return {
        "mgm": mgm_summary(images.reshape(30, -1), 8, "cosine", False, **kw),
        "layers": layer_geometry(
            models[0], images, ["0"], k=8, per_channel=True, orientation=False, **kw
        ),
        "stability": {
            n: s.summary() for n, s in geometric_stability(models, images, ["4"], k=8, **kw).items()
        },
        "loo": channel_loo_errors(models[0], images, labels, "0", k=8, **kw).tolist(),
        "invariance": {
            n: g.to_json()
            for n, g in rotation_invariance(models[0], images[:6], ["4"], (90, 180), **kw).items()
        },
    }


def test_explicit_cpu_gives_the_default_results(images, labels, fit_devices):
    default = _runs(images, labels)
    assert set(fit_devices) == {"cpu"}
    assert _runs(images, labels, "cpu") == default


def test_the_device_reaches_every_graph_fit_and_polytope_solve(
    images, labels, fit_devices, monkeypatch
):
    polytope_devices = []
    polytopes = invariance._polytopes

    def spy(center, versions, device="cpu"):
        polytope_devices.append(str(device))
        return polytopes(center, versions, device)

    monkeypatch.setattr(invariance, "_polytopes", spy)
    default = _runs(images, labels)
    n_fits = len(fit_devices)
    # mgm 1 + layer "0" per channel 4 + stability 2 models + loo 4 channels
    assert n_fits == 11 and set(fit_devices) == {"cpu"} and set(polytope_devices) == {"cpu"}
    fit_devices.clear()
    polytope_devices.clear()
    assert _runs(images, labels, torch.device("cpu", 0)) == default
    assert fit_devices == ["cpu:0"] * n_fits
    assert polytope_devices and set(polytope_devices) == {"cpu:0"}


def test_a_chunk_solves_on_the_device_of_its_chunk(monkeypatch):
    """solve_nnk_chunk resolves each chunk's own device (nnk imports no executor module)."""
    from leafscope.nnk import graph

    asked = []
    resolve_device = graph._chunk_device

    def resolve(device):
        asked.append(device)
        return resolve_device(device)

    monkeypatch.setattr(graph, "_chunk_device", resolve)
    X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    whole = NNKGraph(k=6, metric_batch_size=16, device="cpu:0").fit(X)

    class Serial:
        def map(self, fn, items):
            return [fn(i) for i in items]

    sharded = NNKGraph(k=6, metric_batch_size=16, device="cpu:0").fit(X, executor=Serial())
    assert asked == ["cpu:0"] * 3  # one per chunk of 16, 16, 8 nodes
    np.testing.assert_array_equal(sharded.theta_, whole.theta_)
    assert solve_nnk_chunk is graph.solve_nnk_chunk
