"""ResNet-18, the small VGG and the vector MLP: shapes, parameter counts, build from shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from leafscope.errors import InputError
from leafscope.models import (
    IMAGE_MODEL_NAMES,
    MLP,
    ResNet18,
    SmallVGG,
    build_model,
    build_model_for_input,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(i: int, o: int, k: int) -> int:
    return i * o * k * k  # the zoo's convolutions before BatchNorm have no bias


def bn(c: int) -> int:
    return 2 * c


def resnet18_count(in_channels: int, num_classes: int) -> int:
    total = conv(in_channels, 64, 3) + bn(64)
    planes_in = 64
    for planes in (64, 128, 256, 512):
        for block in range(2):
            cin = planes_in if block == 0 else planes
            total += conv(cin, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes)
            if block == 0 and cin != planes:
                total += conv(cin, planes, 1) + bn(planes)
        planes_in = planes
    return total + 512 * num_classes + num_classes


def test_resnet18_cifar10_has_11173962_parameters() -> None:
    model = build_model("resnet18", in_channels=3, num_classes=10, image_size=32)
    assert isinstance(model, ResNet18)
    assert n_params(model) == resnet18_count(3, 10) == 11_173_962
    assert model.fc.in_features == 512 and model.fc.out_features == 10
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20
    assert n_params(build_model("resnet18", in_channels=1, num_classes=7)) == resnet18_count(1, 7)


@pytest.mark.parametrize(("channels", "size"), [(3, 32), (2, 9)])
def test_resnet18_any_size_and_channels(channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model_for_input("resnet18", (channels, size, size), 5).eval()
    with torch.no_grad():
        assert model(torch.rand(2, channels, size, size)).shape == (2, 5)
    assert model.config["in_channels"] == channels
    with pytest.raises(InputError, match="image_size >= 8"):
        build_model("resnet18", image_size=7)


def test_vgg_parameter_count_and_sizes() -> None:
    model = build_model("vgg", in_channels=3, num_classes=10)
    assert isinstance(model, SmallVGG)
    expected, cin = 0, 3
    for width in (32, 64, 128):
        expected += conv(cin, width, 3) + bn(width) + conv(width, width, 3) + bn(width)
        cin = width
    assert n_params(model) == expected + 128 * 10 + 10 == 288_746
    model.eval()
    with torch.no_grad():
        for shape in [(3, 32, 32), (3, 5, 7), (3, 1, 1), (3, 64, 48)]:
            assert model(torch.rand(2, *shape)).shape == (2, 10)
    small = build_model("vgg", in_channels=1, num_classes=3, widths=[4, 8], convs_per_block=1)
    assert n_params(small) == conv(1, 4, 3) + bn(4) + conv(4, 8, 3) + bn(8) + 8 * 3 + 3
    assert build_model(**small.config).config == small.config
    with pytest.raises(InputError, match="widths"):
        build_model("vgg", widths=[])


def test_vector_mlp_from_shape() -> None:
    model = build_model_for_input("mlp", (17,), 4, hidden=[8])
    assert isinstance(model, MLP)
    assert (model.fc1.in_features, model.fc2.out_features) == (17, 4)
    assert model(torch.rand(3, 17)).shape == (3, 4)
    twin = build_model(**model.config)
    assert twin.fc1.in_features == 17
    rect = build_model_for_input("mlp", (3, 4, 6), 2, hidden=[5])
    assert rect.fc1.in_features == 72 and rect(torch.rand(2, 3, 4, 6)).shape == (2, 2)
    square = build_model_for_input("mlp", (3, 8, 8), 2, hidden=[5])
    assert square.fc1.in_features == 192


def test_build_for_input_refuses_shapes_a_model_cannot_take() -> None:
    with pytest.raises(InputError, match="use `model=mlp`"):
        build_model_for_input("resnet18", (10,), 3)
    with pytest.raises(InputError, match="square"):
        build_model_for_input("lenet", (1, 28, 32), 3)
    with pytest.raises(InputError, match="input_shape"):
        build_model_for_input("vgg", (3, 32), 3)
    with pytest.raises(InputError, match="unknown model"):
        build_model_for_input("resnet50", (3, 32, 32), 3)
    for name in IMAGE_MODEL_NAMES:
        assert build_model_for_input(name, (3, 16, 16), 4, activation="gelu").config["name"] == name


@pytest.mark.parametrize("name", ["resnet18", "vgg"])
def test_eval_mode_is_deterministic_and_per_sample(name: str) -> None:
    torch.manual_seed(3)
    model = build_model(name, in_channels=3, num_classes=6)
    x = torch.rand(3, 3, 8, 8)
    model.train()
    model(x)  # move the BatchNorm running statistics away from their initial values
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # In eval mode BatchNorm uses running statistics, so each output depends on its sample only.
    torch.testing.assert_close(single, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "vgg"])
def test_vmap_jacrev_matches_autograd(name: str) -> None:
    torch.manual_seed(4)
    model = build_model(name, in_channels=2, num_classes=3, image_size=8).double().eval()
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64)
    model.eval()

    def f(xi: torch.Tensor) -> torch.Tensor:
        return model(xi.unsqueeze(0)).squeeze(0)

    batched = vmap(jacrev(f))(x)
    ref = torch.autograd.functional.jacobian(f, x[1])
    torch.testing.assert_close(batched[1], ref, rtol=1e-10, atol=1e-12)
