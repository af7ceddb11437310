"""``predict_logits``: the model's own output in batches, for any classifier (no head needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leafscope.applications.predict import predict_logits
from leafscope.errors import InputError


class ScaledLogits(nn.Module):
    """A classifier whose last nn.Linear is not its output layer, with dropout (eval matters)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.fc(x)) * 2.0 + 1.0


def test_batches_equal_one_forward_pass_in_eval_mode_and_the_mode_is_restored():
    torch.manual_seed(0)
    model = ScaledLogits().double().train()
    x = torch.rand(7, 4)
    got = predict_logits(model, x, batch_size=3)
    model.eval()
    with torch.no_grad():
        want = model(x.double()).float()
    assert got.dtype == torch.float32 and got.shape == (7, 3)
    torch.testing.assert_close(got, want)
    model.train()
    predict_logits(model, x)
    assert model.training and model.drop.training


def test_torchscript_models_work_too():
    torch.manual_seed(0)
    model = ScaledLogits().eval()
    scripted = torch.jit.trace(model, torch.rand(1, 4))
    x = torch.rand(5, 4)
    torch.testing.assert_close(predict_logits(scripted, x), predict_logits(model, x))


def test_bad_input_is_one_clear_error():
    with pytest.raises(InputError, match="N >= 1"):
        predict_logits(ScaledLogits(), torch.zeros(0, 4))
    with pytest.raises(InputError, match="batch_size"):
        predict_logits(ScaledLogits(), torch.zeros(2, 4), batch_size=0)
