"""The leaf-path drivers on toys: constancy inside regions, regions crossed, connection counts."""

import math

import pytest
import torch
from torch import nn

from leafscope.experiments.leafpath import (
    connect_experiment,
    geodesic_experiment,
    path_regions,
    region_constancy,
)
from leafscope.foliation.bracket_paths import BracketPathConfig
from leafscope.foliation.geodesics import GeodesicConfig
from leafscope.foliation.paths import PathConfig, horizontal_paths
from leafscope.testing import tiny_mlp


def test_region_constancy_zero_inside_nonzero_across():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4)).double()
    x = torch.rand(3, 6, dtype=torch.float64)
    rows = region_constancy(model, x, far=(1e-2, 1e-1, 1.0, 10.0))
    for row in rows:
        for key in ("given", "jittered"):
            r = row[key]
            assert r["rank"] == 3 and r["inside_found"]
            assert r["inside_max_angle"] < 1e-13  # the same subspace to float64 precision
            assert r["across_t"] is not None and r["across_changed_units"] >= 1
            assert r["across_max_angle"] > 1e-6


def test_path_regions_bound_holds_without_the_box():
    model = tiny_mlp(n_in=10, n_classes=3, hidden=6, activation="relu", seed=2).double()
    gen = torch.Generator().manual_seed(1)
    start, end = torch.randn(2, 10, generator=gen), torch.randn(2, 10, generator=gen)
    cfg = PathConfig(max_steps=200, box=None, dtype=torch.float64, threshold=0.0)
    res = horizontal_paths(model, start, end, cfg)
    rows = path_regions(model, res, end, prefixes=(1,))
    for row in rows:
        assert row["points"] == 201
        assert row["distinct_regions"] <= row["pattern_changes"] + 1
        assert row["displacement_in_span"] == pytest.approx(1.0, abs=1e-9)
        assert row["path_relative_distance"] >= row["span_bound"] - 1e-9
        assert math.isclose(row["span_bound"], math.sqrt(1 - row["span_fraction"] ** 2))
        if "1" in row["prefix_fraction"]:
            assert row["prefix_fraction"]["1"] <= row["span_fraction"] + 1e-12


def test_connect_experiment_reports_the_three_methods():
    model = tiny_mlp(n_in=6, n_classes=3, hidden=8, activation="tanh")
    gen = torch.Generator().manual_seed(0)
    start, end = torch.rand(2, 6, generator=gen), torch.rand(2, 6, generator=gen)
    out = connect_experiment(
        model,
        start,
        end,
        greedy=PathConfig(max_steps=20, threshold=0.05),
        bracket=BracketPathConfig(max_steps=20, threshold=0.05),
    )
    for name in ("greedy", "leaf_only", "bracket"):
        row = out[name]
        assert row["pairs"] == 2 and 0 <= row["connected_fraction"] <= 1
        assert all(r < 1 for r in row["relative_distance"])
    assert out["leaf_only"]["loops"] == [0, 0]


def test_geodesic_experiment_reports_greedy_tracked_and_the_frozen_line():
    """The greedy rows are those of horizontal_paths on the same pairs; the geodesic rows say
    how many pairs connect, and the frozen line's vertical part shrinks as λ grows."""
    model = tiny_mlp(n_in=6, n_classes=3, hidden=8, activation="tanh")
    gen = torch.Generator().manual_seed(1)
    start, end = torch.rand(2, 6, generator=gen), torch.rand(2, 6, generator=gen) + 1
    greedy = PathConfig(max_steps=20, threshold=0.05, box=None)
    out = geodesic_experiment(
        model, start, end, greedy=greedy,
        geodesic=GeodesicConfig(segments=8, iterations=3, box=None, threshold=0.05),
    )  # fmt: skip
    reference = horizontal_paths(model, start, end, greedy)
    assert out["greedy"]["relative_distance"] == reference.relative_distance
    geo = out["geodesic"]
    assert geo["pairs"] == 2 and 0 <= geo["connected_fraction"] <= 1
    assert [s["penalty"] for s in geo["stages"]] == [10.0, 100.0, 1000.0]
    for row in out["frozen_line"]:
        vertical = [row[k]["vertical_length"] for k in ("100", "10000", "1e+06")]
        assert vertical[0] >= vertical[1] >= vertical[2]
