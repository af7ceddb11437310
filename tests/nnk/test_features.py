"""Forward-hook feature extraction."""

import pytest
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.nnk.features import extract_features, layer_names


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 26 * 26, 4))


def test_features_match_manual_forward():
    model = _model().train()
    x = torch.rand(10, 1, 28, 28)
    feats = extract_features(model, x, ["0", "3"], batch_size=3)
    assert model.training  # mode restored
    torch.testing.assert_close(feats["0"], model[0](x).reshape(10, -1))
    torch.testing.assert_close(feats["3"], model.eval()(x))
    per = extract_features(model, x, ["1"], per_channel=True)["1"]
    assert per.shape == (10, 3, 26 * 26)
    torch.testing.assert_close(per[:, 1], torch.relu(model[0](x))[:, 1].reshape(10, -1))


def test_unknown_layer():
    with pytest.raises(InputError, match="unknown layer"):
        extract_features(_model(), torch.rand(2, 1, 28, 28), ["conv9"])
    assert layer_names(_model())[:2] == ["0", "1"]
