"""``thermo filters`` warns, and records ``trained_to_chance``, when the model it trained is no
better than chance: its temperatures would describe an untrained network."""

from __future__ import annotations

import json
import warnings
from functools import partial

import pytest
import torch
from torch import nn

from leafscope.experiments.thermo.filters import CHANCE_MARGIN, run_filter_experiment


def _stripes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced 3-class 8×8 images: class c has a bright band of rows [3c, 3c + 2)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=gen)
    for i in range(n):
        x[i, 0, 3 * int(y[i]) : 3 * int(y[i]) + 2] += 0.8
    return x.clamp(0, 1), y


class CNN(nn.Module):
    """A small CNN; ``dead=True`` multiplies its logits by 0: no gradient reaches a weight, so
    it cannot learn and predicts class 0 everywhere (exactly chance on balanced data)."""

    def __init__(self, dead: bool = False):
        super().__init__()
        self.dead = dead
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return 0.0 * logits if self.dead else logits


def _run(dead: bool, **settings):
    sets = _stripes(90, 0), _stripes(30, 1), _stripes(60, 2)
    return run_filter_experiment(
        partial(CNN, dead), *sets, layer="net.0", seeds=2, k=1, batch_size=15, **settings
    )


def test_a_model_that_cannot_learn_warns_and_is_flagged():
    with pytest.warns(UserWarning, match="trained to chance") as caught:
        result = _run(True, epochs=1, lr=0.1)
    message = str(caught[0].message)
    assert "seed 0: 33.3%" in message and "chance is 33.3%" in message  # accuracy and chance
    assert "epochs" in message and "learning rate" in message  # what to change
    assert result.trained_to_chance is True
    assert result.config["num_classes"] == 3
    assert result.config["chance_accuracy"] == pytest.approx(100 / 3)
    assert all(s["trained_to_chance"] for s in result.per_seed)
    assert result.rows[0].accuracies == pytest.approx([100 / 3] * 2)
    document = json.loads(json.dumps(result.to_json()))
    assert document["trained_to_chance"] is True


def test_a_model_that_learns_is_not_flagged():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no chance warning (nor any other)
        result = _run(False, epochs=3, lr=0.5)
    chance = result.config["chance_accuracy"]
    assert all(a > chance + CHANCE_MARGIN for a in result.rows[0].accuracies)
    assert result.trained_to_chance is False
    assert not any(s["trained_to_chance"] for s in result.per_seed)
    assert result.to_json()["trained_to_chance"] is False
