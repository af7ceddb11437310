"""The walk experiment: horizontal paths between random pairs next to vertical walks."""

import pytest
import torch

from leafscope.errors import InputError
from leafscope.experiments.foliation import walk_experiment
from leafscope.foliation import PathConfig, WalkConfig
from leafscope.testing import tiny_cnn


def test_walk_experiment_json_has_the_published_keys():
    torch.manual_seed(3)
    model = tiny_cnn(n_classes=3)
    images, labels = torch.rand(12, 1, 8, 8), torch.randint(0, 3, (12,))
    res = walk_experiment(
        model,
        images,
        labels,
        pairs=2,
        methods=("greedy", "adaptive"),
        path_config=PathConfig(max_steps=4),
        vertical_points=4,
        walk_config=WalkConfig(steps=6, record_every=3),
    )
    js = res.to_json()
    for key in (
        "reached_fraction",
        "median_final_distance",
        "median_relative_distance",
        "end_class_match",
    ):
        assert key in js["horizontal"]
    assert set(js["methods"]) == {"greedy", "adaptive"}
    assert [set(r) >= {"distance", "accuracy"} for r in js["vertical"] + js["random"]]
    assert len(js["vertical"]) == len(js["random"]) == 3
    assert js["vertical"][0]["distance"] == 0.0
    with pytest.raises(InputError, match="label"):
        walk_experiment(model, images, labels[:5])
