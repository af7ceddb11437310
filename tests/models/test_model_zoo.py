"""Image models: shapes, parameter counts, config round-trip, torch.func compatibility."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import grad, jacrev, jvp, vmap

from leafscope.errors import InputError
from leafscope.models import (
    ACTIVATIONS,
    IMAGE_MODEL_NAMES,
    MODEL_NAMES,
    LeNet5,
    ManifoldCNN,
    build_model,
)

# The MNIST-sized models; resnet18 and vgg are tested in test_cifar_zoo.py (cheaper sizes).
SMALL_MODELS = ("cnn", "lenet", "mlp")
CASES = [(name, act) for name in SMALL_MODELS for act in sorted(ACTIVATIONS)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear(i: int, o: int) -> int:
    return i * o + o


def conv(i: int, o: int, k: int) -> int:
    return i * o * k * k + o


@pytest.mark.parametrize(("name", "activation"), CASES)
def test_shapes_and_config_round_trip(name: str, activation: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, activation=activation, num_classes=7)
    x = torch.rand(5, 1, 28, 28)
    out = model(x)
    assert out.shape == (5, 7)
    assert model.config["name"] == name
    twin = build_model(**model.config)
    twin.load_state_dict(model.state_dict())
    model.eval()
    twin.eval()
    torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)
    kinds = {type(m) for m in model.modules()}
    assert ACTIVATIONS[activation] in kinds
    assert not (set(ACTIVATIONS.values()) - {ACTIVATIONS[activation]}) & kinds
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_lenet_parameter_count_is_61706() -> None:
    model = build_model("lenet")
    # conv1 pads by 2 so 28 -> 28 -> pool 14 -> conv 10 -> pool 5: fc1 sees 16*5*5 = 400 inputs.
    expected = conv(1, 6, 5) + conv(6, 16, 5) + linear(400, 120) + linear(120, 84) + linear(84, 10)
    assert expected == 61706
    assert n_params(model) == expected
    assert isinstance(model, LeNet5)
    assert (model.conv1.padding, model.fc1.in_features) == ((2, 2), 400)


def test_cnn_has_9216_features_on_mnist() -> None:
    model = build_model("cnn")
    assert isinstance(model, ManifoldCNN)
    # 28 -> 26 -> 24 -> pool 12; 64 * 12 * 12 = 9216.
    assert model.fc1.in_features == 9216
    expected = conv(1, 32, 3) + conv(32, 64, 3) + linear(9216, 128) + linear(128, 10)
    assert n_params(model) == expected == 1_199_882


def test_mlp_layers_and_count() -> None:
    model = build_model("mlp", num_classes=3, hidden=[20, 10])
    assert [model.fc1.in_features, model.fc2.in_features, model.fc3.in_features] == [784, 20, 10]
    assert n_params(model) == linear(784, 20) + linear(20, 10) + linear(10, 3)


@pytest.mark.parametrize("name", IMAGE_MODEL_NAMES)
def test_other_image_size_and_channels(name: str) -> None:
    model = build_model(name, in_channels=3, image_size=32, num_classes=4)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    assert build_model(**model.config).config == model.config


@pytest.mark.parametrize(("name", "activation"), CASES)
def test_vmap_jacrev_matches_autograd(name: str, activation: str) -> None:
    torch.manual_seed(1)
    model = build_model(name, activation=activation, num_classes=10).double().eval()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)

    def f(xi: torch.Tensor) -> torch.Tensor:
        return model(xi.unsqueeze(0)).squeeze(0)

    batched = vmap(jacrev(f))(x)
    assert batched.shape == (2, 10, 1, 28, 28)
    ref = torch.autograd.functional.jacobian(f, x[1])
    torch.testing.assert_close(batched[1], ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("name", "activation"), CASES)
def test_forward_over_reverse_hvp(name: str, activation: str) -> None:
    torch.manual_seed(2)
    model = build_model(name, activation=activation).double().eval()
    x = torch.rand(1, 28, 28, dtype=torch.float64)
    v = torch.randn_like(x)

    def logp(xi: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(model(xi.unsqueeze(0)), dim=1)[0, 3]

    _, hv = jvp(grad(logp), (x,), (v,))
    _, ref = torch.autograd.functional.hvp(logp, x, v)
    torch.testing.assert_close(hv, ref, rtol=1e-8, atol=1e-10)


def test_unknown_name_and_activation_list_valid_ones() -> None:
    with pytest.raises(InputError, match="lenet"):
        build_model("resnet")
    with pytest.raises(InputError, match="gelu"):
        build_model("lenet", activation="tanh")
    with pytest.raises(InputError, match="num_classes"):
        build_model("lenet", num_classes=0)
    with pytest.raises(InputError, match="image_size"):
        build_model("lenet", image_size=8)
    with pytest.raises(InputError, match="bad option"):
        build_model("lenet", hidden=3)
    assert set(MODEL_NAMES) == {"lenet", "cnn", "mlp", "resnet18", "vgg", "gcn", "gcn-link"}
    assert set(SMALL_MODELS) < set(IMAGE_MODEL_NAMES)
