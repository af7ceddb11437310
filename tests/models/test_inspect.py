"""Module names, weight-owning layers and the device of a model."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from leafscope.errors import InputError
from leafscope.models import LeNet5
from leafscope.models.inspect import (
    model_device,
    module_names,
    resolve_modules,
    weight_module,
    weighted_layers,
)


def _toy():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Sequential(nn.Flatten(), nn.Linear(8, 3, bias=False))
    )


class _LinHolder(nn.Module):
    """Like PyTorch Geometric's GCNConv: the weight lives in ``lin``, the bias on the module."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2, bias=False)
        self.bias = nn.Parameter(torch.zeros(2))


def test_module_names_and_weighted_layers_of_a_toy():
    model = _toy()
    assert module_names(model) == ["0", "1", "2", "2.0", "2.1"]
    assert weighted_layers(model) == ["0", "2.1"]
    lenet = LeNet5()
    assert weighted_layers(lenet) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert module_names(lenet)[:3] == ["conv1", "act1", "pool1"]


def test_weight_module_sees_pruned_and_lin_weights():
    model = _toy()
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # weight becomes weight_orig * mask
    assert weighted_layers(model) == ["0", "2.1"]
    holder = _LinHolder()
    assert weight_module(holder) is holder.lin
    assert weight_module(nn.ReLU()) is None
    assert weighted_layers(nn.Sequential(holder)) == ["0", "0.lin"]


def test_model_device_without_parameters_and_off_cpu():
    assert model_device(nn.ReLU()) == torch.device("cpu")
    assert model_device(nn.Sequential()) == torch.device("cpu")
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    only_buffers = nn.Module()
    only_buffers.register_buffer("scale", torch.ones(3, device="meta"))
    assert model_device(only_buffers) == torch.device("meta")


def test_resolve_modules_lists_valid_names():
    model = _toy()
    found = resolve_modules(model, ["2.1", "0", "2.1"])
    assert list(found) == ["2.1", "0"] and found["2.1"] is model[2][1]
    assert list(resolve_modules(model, "1")) == ["1"]
    with pytest.raises(InputError, match=r"unknown layer\(s\) \['fc9', ''\].*0, 1, 2, 2\.0, 2\.1"):
        resolve_modules(model, ["fc9", "", "0"])
    big = nn.Sequential(*[nn.ReLU() for _ in range(40)])
    with pytest.raises(InputError, match=r"29, \.\.\. \(10 more"):
        resolve_modules(big, ["x"])
