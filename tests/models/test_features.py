"""Layer outputs by forward hooks and penultimate features, checked against manual forwards."""

import pytest
import torch
from torch import nn

from leafscope.errors import InputError
from leafscope.models import LeNet5
from leafscope.models.features import head_of, layer_features, penultimate_features
from leafscope.testing import LinearSoftmax, tiny_cnn


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 26 * 26, 4))


def test_features_match_manual_forward():
    model = _model().train()
    x = torch.rand(10, 1, 28, 28)
    feats = layer_features(model, x, ["0", "3"], batch_size=3)  # 3 does not divide 10
    assert model.training  # mode restored
    assert list(feats) == ["0", "3"]
    torch.testing.assert_close(feats["0"], model[0](x).reshape(10, -1))
    torch.testing.assert_close(feats["3"], model.eval()(x))
    per = layer_features(model, x, "1", shape="channels")["1"]
    assert per.shape == (10, 3, 26 * 26)
    torch.testing.assert_close(per[:, 1], torch.relu(model[0](x))[:, 1].reshape(10, -1))
    raw = layer_features(model, x, ["1"], shape="raw", batch_size=4)["1"]
    torch.testing.assert_close(raw, torch.relu(model[0](x)))
    assert layer_features(model, x, ["3"], shape="channels")["3"].shape == (10, 4, 1)


def test_nested_names_on_lenet_match_submodule_chain():
    torch.manual_seed(1)
    model = LeNet5(activation="gelu")
    x = torch.rand(7, 1, 28, 28)
    feats = layer_features(model, x, ["pool1", "act3", "fc3"], shape="raw", batch_size=5)
    with torch.no_grad():
        p1 = model.pool1(model.act1(model.conv1(x)))
        p2 = model.pool2(model.act2(model.conv2(p1)))
        a3 = model.act3(model.fc1(model.flatten(p2)))
        logits = model.fc3(model.act4(model.fc2(a3)))
    torch.testing.assert_close(feats["pool1"], p1)
    torch.testing.assert_close(feats["act3"], a3)
    torch.testing.assert_close(feats["fc3"], logits)


def test_no_grad_cast_and_module_modes_restored():
    model = _model().double().train()
    model[0].eval()  # mixed modes survive the call
    x = torch.rand(4, 1, 28, 28, requires_grad=True)  # float32 into a float64 model
    out = layer_features(model, x, ["3"])["3"]
    assert out.dtype == torch.float32 and out.device.type == "cpu" and not out.requires_grad
    assert all(p.grad is None for p in model.parameters()) and x.grad is None
    assert model.training and not model[0].training and model[3].training
    torch.testing.assert_close(out, model.eval()(x.double()).float().detach())


def test_layer_errors_name_the_bad_value():
    model, x = _model(), torch.rand(2, 1, 28, 28)
    with pytest.raises(InputError, match=r"unknown layer\(s\) \['conv9'\].*0, 1, 2, 3"):
        layer_features(model, x, ["conv9"])
    with pytest.raises(InputError, match="no layer names"):
        layer_features(model, x, [])
    with pytest.raises(InputError, match="unknown shape 'flat2'"):
        layer_features(model, x, ["0"], shape="flat2")
    with pytest.raises(InputError, match="N >= 1"):
        layer_features(model, x[:0], ["0"])
    with pytest.raises(InputError, match="batch_size"):
        layer_features(model, x, ["0"], batch_size=0)
    with pytest.raises(InputError, match="model lives on 'cpu'"):
        layer_features(model, x, ["0"], device="cuda")
    assert model.training and all(not m._forward_hooks for m in model.modules())


class _Twice(nn.Module):
    """Calls one ReLU twice, owns an unused layer and an LSTM (tuple output)."""

    def __init__(self):
        super().__init__()
        self.act, self.unused, self.lstm = nn.ReLU(), nn.Linear(2, 2), nn.LSTM(3, 2)

    def forward(self, x):
        return self.act(self.act(x) - 1) + self.lstm(x[None])[0][0].sum()


def test_layers_that_do_not_run_once_are_refused():
    model, x = _Twice(), torch.rand(5, 3)
    with pytest.raises(InputError, match="layer 'act' 2 times, not once"):
        layer_features(model, x, ["act"])
    with pytest.raises(InputError, match="layer 'unused' 0 times"):
        layer_features(model, x, ["unused"])
    with pytest.raises(InputError, match="'lstm' does not output a \\(batch, ...\\) tensor"):
        layer_features(model, x, ["lstm"])


def test_penultimate_features_of_a_cnn():
    model = tiny_cnn(n_classes=3, seed=2)
    x = torch.rand(9, 1, 8, 8)
    out = penultimate_features(model, x, batch_size=4)
    with torch.no_grad():
        want = model[5](model[4](model[3](model[2](model[1](model[0](x))))))
        logits = model(x)
    torch.testing.assert_close(out.features, want)
    torch.testing.assert_close(out.logits, logits)
    head, weight, bias = head_of(model)
    assert head is model[6]
    torch.testing.assert_close(out.features @ weight.detach().T + bias.detach(), out.logits)


def test_penultimate_features_of_linear_softmax_are_its_inputs():
    torch.manual_seed(3)
    model = LinearSoftmax(torch.randn(4, 6), torch.randn(4))
    x = torch.rand(5, 2, 3)
    out = penultimate_features(model, x)
    torch.testing.assert_close(out.features, x.flatten(1))
    torch.testing.assert_close(out.logits, model(x).detach())


def test_penultimate_features_refuse_models_not_ending_in_linear():
    x = torch.rand(3, 4)
    with pytest.raises(InputError, match="does not produce its logits"):
        penultimate_features(nn.Sequential(nn.Linear(4, 3), nn.Tanh()), x)
    with pytest.raises(InputError, match="has no nn.Linear"):
        penultimate_features(nn.Sequential(nn.Flatten()), x)


@pytest.mark.cuda
def test_features_on_cuda_match_cpu():
    model, x = tiny_cnn(seed=4), torch.rand(6, 1, 8, 8)
    cpu = layer_features(model, x, ["1", "6"])
    cpu_pen = penultimate_features(model, x)
    model.cuda()
    gpu = layer_features(model, x, ["1", "6"])
    gpu_pen = penultimate_features(model, x, device="cuda")
    for name in cpu:
        assert gpu[name].device.type == "cpu"
        torch.testing.assert_close(gpu[name], cpu[name], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu_pen.features, cpu_pen.features, rtol=1e-4, atol=1e-5)
