"""Model geometry across layers: MGM summaries, the last hidden layer, LOO-vs-test correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leafscope.errors import InputError
from leafscope.models import build_model
from leafscope.nnk.geometry import (
    last_hidden_layer,
    layer_geometry,
    loo_test_correlation,
    mgm_summary,
)
from leafscope.testing import tiny_mlp


def test_correlation_hand_example():
    # deviations (0.1, 0, -0.1) and (2/15, 1/30, -1/6): cov 0.03, variances 0.02 and 0.14/3
    r = loo_test_correlation([0.3, 0.2, 0.1], [0.4, 0.3, 0.1])
    assert r == pytest.approx(0.03 / np.sqrt(0.02 * 0.14 / 3), abs=1e-12)
    assert loo_test_correlation([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert loo_test_correlation([0.1, 0.2], [0.3, 0.4]) is None  # fewer than 3 epochs
    assert loo_test_correlation([0.1, 0.1, 0.1], [0.3, 0.4, 0.5]) is None  # constant
    with pytest.raises(InputError, match="one per epoch"):
        loo_test_correlation([0.1, 0.2, 0.3], [0.1])


def test_last_hidden_layer():
    assert last_hidden_layer(build_model("lenet")) == "act4"
    assert last_hidden_layer(tiny_mlp()) == "4"
    with pytest.raises(InputError, match="loo_layer"):
        last_hidden_layer(torch.nn.Sequential(torch.nn.Linear(3, 2)))


def test_layer_geometry_counts_and_bounds():
    torch.manual_seed(0)
    x = torch.randn(80, 12)
    out = layer_geometry(tiny_mlp(), x, ["1", "3"], k=10)
    for name in ("1", "3"):
        s = out[name]
        assert 1 <= s["n_neighbors"]["min"] and s["n_neighbors"]["max"] <= 10
        assert sum(s["n_neighbors"]["hist"]["counts"]) == 80
        assert 0 <= s["diameter"]["max"] <= 2  # unit vectors (cosine kernel)
        assert s["local_dim"]["max"] <= s["n_neighbors"]["max"]
    with pytest.raises(InputError, match="unknown layer"):
        layer_geometry(tiny_mlp(), x, ["nope"])


def test_mgm_summary_needs_three_points():
    with pytest.raises(InputError, match="at least 3 points"):
        mgm_summary(torch.randn(2, 5), k=5, kernel="cosine")
    s = mgm_summary(torch.randn(6, 5), k=10, kernel="cosine", orientation=False)
    assert s["n_neighbors"]["max"] <= 5 and s["orientation"] is None
