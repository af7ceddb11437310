"""The model layer of the spine: one loader (``ModelSpec`` → ``load_model``), the user's own
names through the adapter, features of TorchScript models, eval-mode notes, one-line errors."""

from __future__ import annotations

import copy
import importlib
import shutil
import sys
import textwrap

import pytest
import torch
from torch import nn

from leafscope.errors import CheckpointError, InputError
from leafscope.information import DataInformation, FisherInformation
from leafscope.models import (
    LeNet5,
    ModelAdapter,
    ModelCallError,
    ModelSpec,
    build_model,
    load_model,
    load_notes,
    unwrap,
)
from leafscope.models.features import head_of, layer_features, penultimate_features
from leafscope.models.inspect import (
    input_channels,
    module_names,
    resolve_modules,
    weighted_layers,
)
from leafscope.testing import LinearSoftmax
from leafscope.training import save_checkpoint

FACTORIES = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, in_channels=1, num_classes=4):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc1 = nn.Linear(12, 8)
            self.fc2 = nn.Linear(8, num_classes)

        def forward(self, x):
            h = self.pool(torch.relu(self.bn(self.conv1(x)))).flatten(1)
            return self.fc2(torch.tanh(self.fc1(h)))


    def make(**kwargs):
        return Net(**kwargs)  # nn.Module default: training mode


    def make_eval(**kwargs):
        return Net(**kwargs).eval()


    def broken(**kwargs):
        raise ValueError("weights for depth 50 are not bundled\\nsecond line")


    def vectors():
        return nn.Sequential(nn.Linear(5, 3)).eval()


    def images_out():
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)).eval()
    """
)


@pytest.fixture
def factories(tmp_path, monkeypatch) -> str:
    name = f"layer_factories_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def _net(factories: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    net = importlib.import_module(factories).make(**kwargs)
    net.train()
    net(torch.rand(8, kwargs.get("in_channels", 1), 6, 6) * 2)  # BatchNorm statistics move
    return net.eval()


# ---------------------------------------------------------------- names through the adapter


def test_names_without_prefix_round_trip(factories, tmp_path) -> None:
    net = _net(factories)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    model = load_model(factory=f"{factories}:make", weights=tmp_path / "w.pt")
    assert isinstance(model, ModelAdapter) and unwrap(model) is not net
    assert module_names(model) == module_names(net) == ["conv1", "bn", "pool", "fc1", "fc2"]
    assert weighted_layers(model) == weighted_layers(net) == ["conv1", "bn", "fc1", "fc2"]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in net.named_parameters()]
    # The names reach the same modules as in the user's model; the older prefix still works.
    found = resolve_modules(model, ["conv1", "model.fc2"])
    assert found["conv1"] is unwrap(model).conv1 and found["model.fc2"] is unwrap(model).fc2
    assert model.fc2 is unwrap(model).fc2
    with pytest.raises(InputError, match=r"unknown layer\(s\) \['conv9'\] for Net.*conv1, bn"):
        resolve_modules(model, ["conv9"])
    # A state_dict saved from the adapter loads into the user's model, and back.
    fresh = importlib.import_module(factories).make()
    fresh.load_state_dict(model.state_dict())
    model.load_state_dict(fresh.state_dict())
    x = torch.rand(3, 1, 6, 6)
    feats = layer_features(model, x, ["fc1", "model.bn"])
    ref = layer_features(net, x, ["fc1", "bn"])
    torch.testing.assert_close(feats["fc1"], ref["fc1"], rtol=0, atol=0)
    torch.testing.assert_close(feats["model.bn"], ref["bn"], rtol=0, atol=0)


def test_fisher_parameter_names_are_the_users(factories) -> None:
    net = _net(factories).double()
    model = ModelAdapter(copy.deepcopy(net)).eval()
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    ref = FisherInformation(net, x, parameters=["fc2.weight", "fc2.bias"])
    got = FisherInformation(model, x, parameters=["fc2.weight", "fc2.bias"])
    assert got.parameter_names == ["fc2.weight", "fc2.bias"]
    torch.testing.assert_close(got.eigenvalues(), ref.eigenvalues(), rtol=1e-10, atol=1e-14)
    # A parameter of the wrapped root itself (no sub-module) is swapped by functional_call too.
    torch.manual_seed(3)
    toy = LinearSoftmax(torch.randn(3, 4, dtype=torch.float64))
    wrapped = ModelAdapter(copy.deepcopy(toy))
    xs = torch.rand(5, 4, dtype=torch.float64)
    a = FisherInformation(toy, xs).eigenvalues()
    b = FisherInformation(wrapped, xs).eigenvalues()
    assert FisherInformation(wrapped, xs).parameter_names == ["weight", "bias"]
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-14)


class _Clashing(nn.Module):
    """Public names the adapter could have used: a child ``output``, buffers ``mean``/``std``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, 3), 0.25))
        self.register_buffer("std", torch.full((1, 3), 2.0))
        self.output = nn.Linear(3, 2)

    def forward(self, x):
        return self.output((x - self.mean) / self.std)


def test_the_users_names_win_over_the_adapters() -> None:
    torch.manual_seed(5)
    net = _Clashing().double().eval()
    model = ModelAdapter(net, mean=(0.5,), std=(0.5,), output=None)
    assert isinstance(model.output, nn.Linear) and torch.equal(model.mean, net.mean)
    assert list(model.state_dict()) == ["mean", "std", "output.weight", "output.bias"]
    x = torch.rand(4, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - 0.5) / 0.5), rtol=0, atol=0)
    got = FisherInformation(model, x, parameters=["output.weight"]).eigenvalues()
    ref = FisherInformation(net, (x - 0.5) / 0.5, parameters=["output.weight"]).eigenvalues()
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-14)


def test_adapter_copies_and_modes(factories) -> None:
    net = _net(factories)
    model = ModelAdapter(net, mean=(0.5,), std=(0.25,)).train()
    assert net.training and net.bn.training
    model.eval()
    assert not net.training and not net.bn.training
    twin = copy.deepcopy(model).double()
    assert unwrap(twin) is not net and twin.fc2.weight.dtype == torch.float64
    assert net.fc2.weight.dtype == torch.float32  # the original is untouched
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(twin(x).float(), model(x.float()), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- TorchScript features


def _sequential_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 8),
        nn.ReLU(),
        nn.Linear(8, 5),
    ).eval()


@pytest.mark.parametrize("make", ["script", "trace"])
def test_torchscript_features_equal_the_eager_models(tmp_path, make) -> None:
    net = _sequential_cnn()
    x = torch.rand(7, 3, 8, 8)
    module = torch.jit.script(net) if make == "script" else torch.jit.trace(net, x[:2])
    torch.jit.save(module, tmp_path / "net.ts")
    model = load_model(tmp_path / "net.ts", normalize="cifar10")
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # the cifar10 preset
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert module_names(model) == module_names(net) == [str(i) for i in range(7)]
    got = layer_features(model, x, ["1", "4", "model.6"], batch_size=3)
    ref = layer_features(net, z, ["1", "4", "6"], batch_size=3)
    for name, key in (("1", "1"), ("4", "4"), ("6", "model.6")):
        torch.testing.assert_close(got[key], ref[name], rtol=0, atol=0)
    raw = layer_features(model, x, "2", shape="channels")["2"]
    assert raw.shape == (7, 4, 9)
    head, weight, bias = head_of(model)
    assert (
        head is not None and torch.equal(weight, net[6].weight) and torch.equal(bias, net[6].bias)
    )
    out, eager_out = penultimate_features(model, x, batch_size=4), penultimate_features(net, z)
    torch.testing.assert_close(out.features, eager_out.features, rtol=0, atol=0)
    torch.testing.assert_close(out.logits, eager_out.logits, rtol=1e-6, atol=1e-6)
    assert not model.training and not any(m.training for m in model.modules())


def test_traced_zoo_lenet_composes(tmp_path) -> None:
    torch.manual_seed(2)
    lenet = LeNet5(activation="gelu").eval()
    x = torch.rand(5, 1, 28, 28)
    torch.jit.save(torch.jit.trace(lenet, x[:2]), tmp_path / "lenet.ts")
    model = load_model(tmp_path / "lenet.ts")
    assert load_notes(model) == []  # traced in eval mode
    assert weighted_layers(model) == weighted_layers(lenet)
    got = layer_features(model, x, ["pool1", "act3", "fc3"])
    ref = layer_features(lenet, x, ["pool1", "act3", "fc3"])
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-6, atol=1e-6)
    a, b = penultimate_features(model, x), penultimate_features(lenet, x)
    torch.testing.assert_close(a.features, b.features, rtol=1e-6, atol=1e-6)
    # A bare ScriptModule (not loaded through load_model) works the same way.
    scripted = torch.jit.script(lenet)
    torch.testing.assert_close(
        penultimate_features(scripted, x).features, b.features, rtol=1e-6, atol=1e-6
    )


class _FunctionalTanh(nn.Module):
    """The activation is a function in forward, not a sub-module: children do not compose."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(3 * self.a(x)))


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x + self.conv(x)).flatten(1))


@pytest.mark.parametrize(
    ("net", "x"),
    [(_FunctionalTanh(), torch.rand(6, 4)), (_Residual(), torch.rand(3, 2, 4, 4))],
)
def test_torchscript_that_does_not_compose_is_refused_in_one_line(tmp_path, net, x) -> None:
    torch.manual_seed(4)
    torch.jit.save(torch.jit.script(net.eval()), tmp_path / "m.ts")
    model = load_model(tmp_path / "m.ts")
    for call in (
        lambda: penultimate_features(model, x),
        lambda: layer_features(model, x, [module_names(model)[0]]),
    ):
        with pytest.raises(InputError) as exc:
            call()
        text = _one_line(exc)
        assert "do not reproduce its output" in text and "MODULE:CALLABLE" in text
        assert "still works for G" in text
    DataInformation(model, x.double(), dtype=torch.float64)  # G still works


def test_torchscript_layer_inside_a_custom_child_is_named(tmp_path) -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(4, 4)

        def forward(self, x):
            return torch.relu(self.inner(x))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.block(x))

    model = torch.jit.script(Net().eval())
    x = torch.rand(3, 4)
    assert layer_features(model, x, ["block"])["block"].shape == (3, 4)
    with pytest.raises(InputError, match=r"\['block.inner'\].*reaches block, head") as exc:
        layer_features(model, x, ["block.inner"])
    _one_line(exc)


# ---------------------------------------------------------------- eval mode and notes


def test_training_mode_model_is_put_in_eval_mode_with_a_note(factories, tmp_path) -> None:
    model = load_model(factory=f"{factories}:make")
    assert not model.training and not unwrap(model).training
    assert not any(m.training for m in model.modules())
    (note,) = load_notes(model)
    assert note.startswith("model was in training mode; put in eval mode")
    assert "BatchNorm2d" in note
    assert load_notes(load_model(factory=f"{factories}:make_eval")) == []
    lenet = build_model("lenet")
    save_checkpoint(tmp_path / "c.pt", model=lenet, epoch=1, step=1, history=[])
    assert load_notes(load_model(tmp_path / "c.pt")) == []
    scripted = torch.jit.script(_sequential_cnn().train())
    torch.jit.save(scripted, tmp_path / "t.ts")
    assert load_notes(load_model(tmp_path / "t.ts")) == [
        "model was in training mode; put in eval mode"
    ]


# ---------------------------------------------------------------- one-line errors


def test_factory_that_raises_is_one_line(factories) -> None:
    with pytest.raises(InputError) as exc:
        load_model(factory=f"{factories}:broken", factory_kwargs={"depth": 50})
    text = _one_line(exc)
    assert f"`factory={factories}:broken` raised ValueError" in text
    assert '(called with `factory_kwargs={"depth": 50}`)' in text
    assert "weights for depth 50 are not bundled" in text and "second line" not in text
    with pytest.raises(InputError, match=r"make` raised TypeError.*\{\"width\": 3\}"):
        load_model(factory=f"{factories}:make", factory_kwargs={"width": 3})
    spec = ModelSpec(factory=f"{factories}:broken")
    with pytest.raises(InputError, match="raised ValueError"):
        spec.load()


def test_outputs_that_are_not_logits_name_the_shape(factories) -> None:
    model = load_model(factory=f"{factories}:images_out")
    with pytest.raises(InputError) as exc:
        model(torch.rand(2, 1, 5, 5))
    text = _one_line(exc)
    assert "shape (2, 2, 5, 5) for a batch of 2 inputs; expected logits of shape (2, C)" in text
    assert "grey" not in text and "resize" not in text and "--" not in text
    assert not isinstance(exc.value, ModelCallError)  # not an input-shape problem
    # A model failing on the inputs is an input problem, told apart by its type.
    vec = load_model(factory=f"{factories}:vectors")
    with pytest.raises(ModelCallError, match=r"fails on inputs of shape \(2, 4\)") as exc:
        vec(torch.rand(2, 4))
    _one_line(exc)


def test_normalisation_channels_are_checked(factories, tmp_path) -> None:
    # A 3-channel normalisation on a 1-channel model names both counts.
    with pytest.raises(InputError) as exc:
        load_model(factory=f"{factories}:make", normalize="cifar10")
    text = _one_line(exc)
    assert "`normalize=cifar10` has 3 channels but the model takes 1-channel inputs" in text
    with pytest.raises(InputError, match="`normalize` has 2 channels but the model takes 3"):
        load_model(
            factory=f"{factories}:make", factory_kwargs={"in_channels": 3}, normalize="0,0:1,1"
        )
    # The one-channel mnist preset on an RGB model is refused, naming what fits.
    with pytest.raises(InputError) as exc:
        load_model(
            factory=f"{factories}:make", factory_kwargs={"in_channels": 3}, normalize="mnist"
        )
    text = _one_line(exc)
    assert "`normalize=mnist` has 1 channel but the model takes 3" in text
    assert "imagenet" in text and "cifar10" in text and "MEAN:STD" in text and "--" not in text
    # One explicit value applies to every channel (documented), and matching counts load.
    load_model(factory=f"{factories}:make", factory_kwargs={"in_channels": 3}, normalize="0.5:0.5")
    load_model(factory=f"{factories}:make", factory_kwargs={"in_channels": 3}, normalize="imagenet")
    load_model(factory=f"{factories}:make", normalize="mnist")
    # Leafscope checkpoints know their channels from their config.
    lenet = build_model("lenet", in_channels=3, image_size=28)
    save_checkpoint(tmp_path / "c.pt", model=lenet, epoch=1, step=1, history=[])
    with pytest.raises(InputError, match="`normalize=mnist` has 1 channel but the model takes 3"):
        load_model(tmp_path / "c.pt", normalize="mnist")
    # Channels unknown at load (no convolution): the inputs are checked on each call.
    toy = ModelAdapter(nn.Flatten(), mean=(0.1307,), std=(0.3081,), preset="mnist")
    with pytest.raises(
        InputError, match="`normalize=mnist` has 1 channel but the inputs have 3"
    ) as exc:
        toy(torch.rand(2, 3, 4, 4))
    assert not isinstance(exc.value, ModelCallError)
    three = ModelAdapter(nn.Flatten(), mean=(0.5, 0.5, 0.5), std=(1, 1, 1))
    with pytest.raises(InputError, match=r"3 values per channel but the inputs .* have 1 chan"):
        three(torch.rand(2, 1, 4, 4))


def test_input_channels() -> None:
    assert input_channels(build_model("lenet", in_channels=3)) == 3
    assert input_channels(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU())) == 2
    assert input_channels(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) is None
    assert input_channels(torch.jit.script(_sequential_cnn())) == 3
    assert input_channels(ModelAdapter(_sequential_cnn())) == 3


# ---------------------------------------------------------------- ModelSpec


def test_model_spec_is_the_one_loader(factories, tmp_path) -> None:
    net = _net(factories)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    spec = ModelSpec(factory=f"{factories}:make", weights=str(tmp_path / "w.pt"))
    x = torch.rand(3, 1, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(spec.load()(x), net(x), rtol=0, atol=0)
        torch.testing.assert_close(load_model(spec)(x), net(x), rtol=0, atol=0)
    with pytest.raises(InputError, match="set weights in the spec"):
        load_model(spec, weights=tmp_path / "w.pt")
    # A run folder loads its newest checkpoint.
    mlp = build_model("mlp", in_features=4, num_classes=2, hidden=[3])
    run = tmp_path / "run"
    save_checkpoint(run / "epoch_0001.pt", model=mlp, epoch=1, step=2, history=[])
    with torch.no_grad():
        for p in mlp.parameters():
            p.add_(1.0)
    save_checkpoint(run / "epoch_0002.pt", model=mlp, epoch=2, step=4, history=[])
    loaded = ModelSpec(checkpoint=str(run)).load()
    torch.testing.assert_close(loaded.state_dict(), mlp.state_dict(), rtol=0, atol=0)
    assert ModelSpec(checkpoint=str(run)).files()["checkpoint"].name == "epoch_0002.pt"


def test_fingerprint_follows_the_weights_contents(factories, tmp_path) -> None:
    net = _net(factories)
    first = tmp_path / "a" / "w.pt"
    first.parent.mkdir()
    torch.save(net.state_dict(), first)
    spec = ModelSpec(factory=f"{factories}:make", weights=str(first)).absolute()
    before, key = spec.fingerprint(), spec.content_key()
    # Copied elsewhere: the hashes and the content key are equal, the paths (so the
    # fingerprint, from which the spec can be rebuilt) differ.
    copy_path = tmp_path / "b" / "w.pt"
    copy_path.parent.mkdir()
    shutil.copy(first, copy_path)
    moved = ModelSpec(factory=f"{factories}:make", weights=str(copy_path)).absolute()
    assert moved.fingerprint()["weights_sha256"] == before["weights_sha256"]
    assert moved.fingerprint()["weights"] != before["weights"]
    assert moved.fingerprint() != before and moved.content_key() == key
    assert ModelSpec(**{k: moved.fingerprint()[k] for k in ("factory", "weights")}) == moved
    # Changed weights at the same path: the hash, the fingerprint and the content key change.
    with torch.no_grad():
        net.fc2.bias.add_(1.0)
    torch.save(net.state_dict(), first)
    after = spec.fingerprint()
    assert after["weights_sha256"] != before["weights_sha256"] and after != before
    assert spec.content_key() != key
    # Other options change the key too.
    other = ModelSpec(factory=f"{factories}:make", weights=str(first), normalize="mnist")
    assert other.content_key() != spec.content_key()


def test_model_spec_bad_values_are_one_line(factories, tmp_path) -> None:
    for kwargs, match in [
        ({}, "exactly one source"),
        ({"checkpoint": "a", "factory": "b:c"}, "exactly one source"),
        ({"factory": "m:f", "factory_kwargs": "[1]"}, "JSON object"),
        ({"factory": "m:f", "factory_kwargs": "{bad"}, "JSON object"),
        ({"checkpoint": "a.pt", "factory_kwargs": '{"a": 1}'}, "name one"),
    ]:
        with pytest.raises(InputError, match=match) as exc:
            ModelSpec(**kwargs)
        _one_line(exc)
    with pytest.raises(CheckpointError, match="no checkpoint at") as exc:
        ModelSpec(checkpoint=str(tmp_path / "absent.pt")).load()
    _one_line(exc)
