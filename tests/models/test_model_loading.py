"""leafscope.models.load_model: user factories + weights, TorchScript, output selection,
normalisation inside the model (chain rule of G), and the error messages."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from leafscope.errors import CheckpointError, InputError
from leafscope.information import DataInformation
from leafscope.models import (
    ModelAdapter,
    build_model,
    load_model,
    load_weights,
    parse_normalize,
)
from leafscope.models.loading import is_torchscript
from leafscope.training import save_checkpoint

USER_MODULE = textwrap.dedent(
    """
    from types import SimpleNamespace

    import torch
    from torch import nn

    VALUE = 5


    class Net(nn.Module):
        def __init__(self, in_channels=1, num_classes=10, width=4, kind="tensor"):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
            self.bn = nn.BatchNorm2d(width)
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(4 * width, num_classes)
            self.kind = kind

        def forward(self, x):
            h = self.pool(torch.tanh(self.bn(self.conv(x)))).flatten(1)
            z = self.fc(h)
            if self.kind == "dict":
                return {"features": h, "logits": z}
            if self.kind == "tuple":
                return (h, z)
            if self.kind == "object":
                return SimpleNamespace(logits=z, features=h)
            return z


    def make(**kwargs):
        return Net(**kwargs)


    def not_a_module():
        return 3
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> str:
    """A factory module on sys.path with a unique name; returns that name."""
    name = f"usermods_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def trained(module_name: str, **kwargs) -> nn.Module:
    """The user's Net with BatchNorm statistics moved by one training-mode pass."""
    torch.manual_seed(0)
    net = importlib.import_module(module_name).make(**kwargs)
    net.train()
    net(torch.rand(8, kwargs.get("in_channels", 1), 6, 6) * 3)
    return net.eval()


def test_factory_with_weights_reproduces_the_model(user_module, tmp_path) -> None:
    net = trained(user_module, in_channels=3, num_classes=6)
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    model = load_model(
        factory=f"{user_module}:make",
        factory_kwargs={"in_channels": 3, "num_classes": 6},
        weights=path,
    )
    assert isinstance(model, ModelAdapter)
    assert not any(m.training for m in model.modules())
    x = torch.rand(5, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)
    # The user's own names: modules, parameters and the state_dict, no adapter prefix.
    assert [n for n, _ in model.named_modules()] == ["", "conv", "bn", "pool", "fc"]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in net.named_parameters()]
    assert list(model.state_dict()) == list(net.state_dict())


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix", "leafscope"])
def test_weights_in_every_accepted_container(user_module, tmp_path, wrap) -> None:
    net = trained(user_module)
    state = net.state_dict()
    path = tmp_path / "w.pt"
    if wrap == "leafscope":
        save_checkpoint(path, model=net, epoch=1, step=1, history=[])
    else:
        payload = {
            "plain": state,
            "state_dict": {"state_dict": state, "epoch": 3},
            "model": {"model": state, "optimizer": {"lr": 0.1}},
            "module_prefix": {f"module.{k}": v for k, v in state.items()},
        }[wrap]
        torch.save(payload, path)
    model = load_model(factory=f"{user_module}:make", weights=path)
    x = torch.rand(3, 1, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)


def test_factory_from_a_python_file(tmp_path) -> None:
    path = tmp_path / "file_factory.py"
    path.write_text(USER_MODULE)
    model = load_model(factory=f"{path}:make", factory_kwargs={"num_classes": 3})
    assert model(torch.rand(2, 1, 5, 5)).shape == (2, 3)
    with pytest.raises(InputError, match="no Python file"):
        load_model(factory=f"{tmp_path / 'absent.py'}:make")


def test_torchscript_file_is_detected_and_loaded(user_module, tmp_path) -> None:
    net = trained(user_module, num_classes=5)
    scripted, saved = tmp_path / "net.ts", tmp_path / "state.pt"
    torch.jit.save(torch.jit.trace(net, torch.rand(2, 1, 6, 6)), scripted)
    torch.save(net.state_dict(), saved)
    assert is_torchscript(scripted) and not is_torchscript(saved)
    model = load_model(scripted)
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x.float()), net(x.float()), rtol=0, atol=0)
    # The information matrices run through TorchScript (float64 copy, vmap of jacrev).
    ref = DataInformation(net, x, dtype=torch.float64)
    got = DataInformation(model, x, dtype=torch.float64)
    torch.testing.assert_close(got.eigenvalues(), ref.eigenvalues(), rtol=1e-10, atol=1e-14)
    # A plain state_dict given as --checkpoint says to use --weights with --model.
    with pytest.raises(CheckpointError, match="holds weights only"):
        load_model(saved)


def test_torchscript_batchnorm_in_training_mode_is_refused_without_force_eval(
    user_module, tmp_path
) -> None:
    scripted = torch.jit.trace(trained(user_module), torch.rand(2, 1, 6, 6))
    scripted.train()
    x = torch.rand(2, 1, 6, 6)
    with pytest.raises(InputError, match="BatchNorm layer 'bn' is in training mode"):
        DataInformation(scripted, x, force_eval=False)
    DataInformation(scripted, x)  # default: evaluated in eval mode
    assert scripted.training and scripted.bn.training  # the caller's mode is restored


def test_library_model_in_training_mode(user_module) -> None:
    net = trained(user_module)
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    ref = DataInformation(net, x, dtype=torch.float64).eigenvalues()
    net.train()
    # Default: evaluated in eval mode (same G), the training flags restored afterwards.
    got = DataInformation(net, x, dtype=torch.float64).eigenvalues()
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert net.training and net.bn.training
    with pytest.raises(InputError, match="BatchNorm layer 'bn'.*model.eval"):
        DataInformation(net, x, force_eval=False)
    with pytest.raises(InputError, match="BatchNorm layer 'bn'"):
        DataInformation(ModelAdapter(net), x, force_eval=False)


@pytest.mark.parametrize(
    ("kind", "key"), [("dict", "logits"), ("tuple", "1"), ("object", "logits")]
)
def test_outputs_select_the_logits(user_module, kind, key) -> None:
    net = trained(user_module, kind=kind, num_classes=4)
    plain = trained(user_module, num_classes=4)
    x = torch.rand(3, 1, 6, 6)
    model = load_model(
        factory=f"{user_module}:make",
        factory_kwargs={"kind": kind, "num_classes": 4},
        weights=net.state_dict(),
    )
    with pytest.raises(InputError, match="pass the (key|index|attribute)"):
        model(x)
    model = ModelAdapter(net, output=key).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)
    g = DataInformation(model, x.double(), dtype=torch.float64)
    ref = DataInformation(plain, x.double(), dtype=torch.float64)
    torch.testing.assert_close(g.eigenvalues(), ref.eigenvalues(), rtol=1e-12, atol=1e-15)


def test_output_errors(user_module) -> None:
    x = torch.rand(2, 1, 6, 6)
    as_dict = trained(user_module, kind="dict")
    with pytest.raises(InputError, match=r"keys features, logits.*e.g. `output=features`"):
        ModelAdapter(as_dict)(x)
    with pytest.raises(InputError, match="no key 'scores': its keys are features, logits"):
        ModelAdapter(as_dict, output="scores")(x)
    as_tuple = trained(user_module, kind="tuple")
    with pytest.raises(InputError, match="tuple of 2 items.*e.g. `output=0`"):
        ModelAdapter(as_tuple)(x)
    with pytest.raises(InputError, match="use 0..1"):
        ModelAdapter(as_tuple, output=2)(x)
    with pytest.raises(InputError, match="SimpleNamespace.*e.g. `output=logits`"):
        ModelAdapter(trained(user_module, kind="object"))(x)
    with pytest.raises(InputError, match="nothing to select"):
        ModelAdapter(trained(user_module), output="logits")(x)

    class Flat(nn.Module):
        def forward(self, x):
            return {"logits": x.flatten(1).sum(1)}

    with pytest.raises(InputError, match=r"shape \(2,\) for a batch of 2 inputs; expected logits"):
        ModelAdapter(Flat(), output="logits")(x)


def test_factory_errors(user_module, tmp_path) -> None:
    with pytest.raises(InputError, match="cannot import module 'no_such_mod_xyz'.*No module named"):
        load_model(factory="no_such_mod_xyz:make")
    (tmp_path / "broken_mod_xyz.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(InputError, match="'broken_mod_xyz' .*RuntimeError: boom at import"):
        load_model(factory="broken_mod_xyz:make")
    sys.modules.pop("broken_mod_xyz", None)
    with pytest.raises(InputError, match="has no attribute 'absent'.*make"):
        load_model(factory=f"{user_module}:absent")
    with pytest.raises(InputError, match="'VALUE' is a int, not a callable"):
        load_model(factory=f"{user_module}:VALUE")
    with pytest.raises(InputError, match="returned a int, not a torch.nn.Module"):
        load_model(factory=f"{user_module}:not_a_module")
    with pytest.raises(
        InputError, match=r"make` raised TypeError.*depth.*`factory_kwargs=\{\"depth\": 3\}`"
    ):
        load_model(factory=f"{user_module}:make", factory_kwargs={"depth": 3})
    with pytest.raises(InputError, match="MODULE:CALLABLE"):
        load_model(factory="lenet")
    with pytest.raises(InputError, match="exactly one model"):
        load_model()
    with pytest.raises(InputError, match="exactly one model"):
        load_model(tmp_path, factory=f"{user_module}:make")


def test_weights_errors_name_the_keys(user_module, tmp_path) -> None:
    net = trained(user_module, num_classes=10)
    state = net.state_dict()
    bad = {k: v for k, v in state.items() if not k.startswith("bn.")}
    bad["head.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError,
        match=r"missing keys \[bn.bias, bn.num_batches_tracked.*unexpected keys \[head.weight\]",
    ):
        load_model(factory=f"{user_module}:make", weights=bad)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*fc.weight \(10, 16\) vs \(3, 16\)"):
        load_model(factory=f"{user_module}:make", factory_kwargs={"num_classes": 3}, weights=state)
    many = {f"extra{i}": torch.zeros(1) for i in range(9)}
    with pytest.raises(CheckpointError, match="and 4 more"):
        load_model(factory=f"{user_module}:make", weights={**state, **many})
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": state, "net": net}, path)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_model(factory=f"{user_module}:make", weights=path)
    torch.save({"lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        load_model(factory=f"{user_module}:make", weights=path)
    with pytest.raises(CheckpointError, match="no weights file"):
        load_model(factory=f"{user_module}:make", weights=tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_model(tmp_path / "absent.pt")


def test_parse_normalize() -> None:
    assert parse_normalize("0.5,0.25,0.125:0.5,1,2") == ((0.5, 0.25, 0.125), (0.5, 1.0, 2.0))
    assert parse_normalize("cifar10")[0] == (0.4914, 0.4822, 0.4465)
    assert parse_normalize("0.1307:0.3081") == ((0.1307,), (0.3081,))
    for text, match in [
        ("0.5,0.5", "MEAN:STD"),
        ("a:b", "MEAN:STD"),
        ("0,0:1,1,1", "2 means"),
        ("0:0", "> 0"),
    ]:
        with pytest.raises(InputError, match=match):
            parse_normalize(text)


def test_normalize_wrapper_obeys_the_chain_rule(user_module) -> None:
    """With z = (x − m)/s per channel, G_wrapped(x) = S⁻¹ G_raw(z) S⁻¹, S = diag(s)."""
    raw = trained(user_module, in_channels=3, num_classes=5).double()
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.5, 2.0)
    wrapped = ModelAdapter(raw, mean=mean, std=std).eval()
    torch.manual_seed(5)
    x = torch.rand(3, 3, 4, 4, dtype=torch.float64)
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    z = (x - m) / s
    g_wrapped = DataInformation(wrapped, x).dense()
    g_raw = DataInformation(raw, z).dense()
    inv_s = (1 / s).expand(1, 3, 4, 4).reshape(-1)
    expected = inv_s[None, :, None] * g_raw * inv_s[None, None, :]
    torch.testing.assert_close(g_wrapped, expected, rtol=1e-10, atol=1e-14)
    # The probabilities are those of the raw model at z, and the wrapper is not the identity.
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), raw(z), rtol=1e-12, atol=1e-12)
    assert (g_wrapped - DataInformation(raw, x).dense()).abs().max() > 1e-6
    with pytest.raises(InputError, match="3 values per channel"):
        wrapped(torch.rand(2, 1, 4, 4, dtype=torch.float64))
    single = ModelAdapter(raw, mean=(0.5,), std=(0.25,))
    with torch.no_grad():
        torch.testing.assert_close(single(x), raw((x - 0.5) / 0.25), rtol=0, atol=0)


def test_normalize_and_output_through_load_model(user_module, tmp_path) -> None:
    net = trained(user_module, in_channels=3, kind="dict", num_classes=4)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": net.state_dict()}, path)
    model = load_model(
        factory=f"{user_module}:make",
        factory_kwargs={"in_channels": 3, "kind": "dict", "num_classes": 4},
        weights=path,
        normalize="cifar10",
        output="logits",
    )
    x = torch.rand(2, 3, 6, 6)
    m, s = (torch.tensor(v).view(1, 3, 1, 1) for v in parse_normalize("cifar10"))
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - m) / s)["logits"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("resnet18", {"in_channels": 3, "num_classes": 10}, (3, 8, 8)),
        ("vgg", {"in_channels": 3, "num_classes": 4, "widths": [4, 8]}, (3, 10, 10)),
        ("mlp", {"in_features": 12, "num_classes": 3, "hidden": [6]}, (12,)),
    ],
)
def test_zoo_state_dict_round_trip_through_the_loader(name, options, shape, tmp_path) -> None:
    torch.manual_seed(6)
    model = build_model(name, **options)
    model.train()
    model(torch.rand(4, *shape))  # non-trivial BatchNorm statistics
    model.eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded = load_model(
        factory="leafscope.models:build_model",
        factory_kwargs={"name": name, **options},
        weights=tmp_path / "w.pt",
    )
    x = torch.rand(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    save_checkpoint(tmp_path / "ckpt.pt", model=model, epoch=1, step=1, history=[])
    rebuilt = load_model(tmp_path / "ckpt.pt")
    assert rebuilt.config == model.config  # leafscope checkpoints come back unwrapped
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    wrapped = load_model(tmp_path / "ckpt.pt", normalize="0.5:0.5")
    assert isinstance(wrapped, ModelAdapter)
    assert load_weights(build_model(name, **options), tmp_path / "w.pt").state_dict().keys() == (
        model.state_dict().keys()
    )


def test_run_folder_is_accepted(tmp_path) -> None:
    model = build_model("mlp", in_features=4, num_classes=2, hidden=[3])
    save_checkpoint(tmp_path / "run" / "epoch_0001.pt", model=model, epoch=1, step=2, history=[])
    assert isinstance(load_model(Path(tmp_path / "run")), type(model))
