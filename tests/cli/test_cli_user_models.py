"""User models in the commands: --model MODULE:CALLABLE --weights, TorchScript --checkpoint,
--normalize, --output; `leafscope spectrum` against a dense G on the data (issue 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import jacrev

from leafscope.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]

USER_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, in_channels=1, num_classes=10, width=6, as_dict=False):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
            self.bn = nn.BatchNorm2d(width)
            self.pool = nn.AdaptiveAvgPool2d(3)
            self.fc = nn.Linear(9 * width, num_classes)
            self.as_dict = as_dict

        def forward(self, x):
            z = self.fc(self.pool(torch.tanh(self.bn(self.conv(x)))).flatten(1))
            return {"logits": z} if self.as_dict else z


    def make(**kwargs):
        return Net(**kwargs)
    """
)

MODEL_COMMANDS = (
    "spectrum",
    "denoise",
    "generate",
    "involutivity",
    "ood",
    "path",
    "transfer",
    "walk",
    "nnk",
    "stability",
    "invariance",
    "early-stopping",
)
MODEL_FLAGS = ("--checkpoint", "--model", "--model-args", "--weights", "--normalize", "--output")


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> tuple[str, Path]:
    name = f"cli_usermods_{tmp_path.name.replace('-', '_')}"
    folder = tmp_path / "pymods"
    folder.mkdir()
    (folder / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    yield name, folder
    sys.modules.pop(name, None)


def make_weights(module: str, path: Path, in_channels: int, **kwargs) -> torch.nn.Module:
    """Random user Net with moved BatchNorm statistics; state_dict saved at ``path``."""
    import importlib

    torch.manual_seed(0)
    net = importlib.import_module(module).make(in_channels=in_channels, **kwargs)
    net.train()
    net(torch.rand(16, in_channels, 8, 8))
    net.eval()
    torch.save(net.state_dict(), path)
    return net


def make_npz(path: Path, shape: tuple[int, ...], n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    np.savez(path, x_test=x, y_test=rng.integers(0, 10, n), x_train=x, y_train=np.zeros(n, int))
    return x


def dense_top_eigenvalues(fn, x: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Top-k eigenvalues of G = Jᵀ diag(p) J − (Jᵀp)(pᵀJ) at each point of ``x`` (float64),
    with J the (C, d) Jacobian of the logits ``fn`` (a batch → logits map), G built densely."""
    shape = x.shape[1:]

    def logits(v: torch.Tensor) -> torch.Tensor:
        return fn(v.reshape(1, *shape))[0]

    out = []
    for xi in x.reshape(len(x), -1):
        jac = jacrev(logits)(xi)
        with torch.no_grad():
            p = torch.softmax(logits(xi), 0)
        jp = jac.T @ p
        g = jac.T @ (p[:, None] * jac) - torch.outer(jp, jp)
        out.append(torch.linalg.eigvalsh(g).flip(0)[:k])
    return torch.stack(out)


def spectrum_top(path: Path, k: int = 5) -> torch.Tensor:
    points = json.loads(path.read_text())["points"]
    return 10 ** torch.tensor([p["log10_eigenvalues"][:k] for p in points], dtype=torch.float64)


def test_every_model_command_has_the_model_flags() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in MODEL_COMMANDS:
        options = sub.choices[command]._option_string_actions
        missing = [flag for flag in MODEL_FLAGS if flag not in options]
        assert not missing, f"{command} lacks {missing}"


def test_spectrum_grey_npz_user_model_matches_dense_g(user_module, tmp_path) -> None:
    name, _ = user_module
    net = make_weights(name, tmp_path / "w.pt", in_channels=1)
    raw = make_npz(tmp_path / "grey.npz", (28, 28), n=4)
    out = tmp_path / "spectrum.json"
    argv = ["spectrum", "--model", f"{name}:make", "--weights", str(tmp_path / "w.pt")]
    argv += ["--dataset", str(tmp_path / "grey.npz"), "--points", "4", "--dtype", "float64"]
    argv += ["--normalize", "0.1307:0.3081", "--json", str(out), "--device", "cpu"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["model"].startswith(f"{name}:make, weights")
    x = torch.from_numpy(raw).double()[:, None] / 255
    net = net.double()
    ref = dense_top_eigenvalues(lambda v: net((v - 0.1307) / 0.3081), x)
    torch.testing.assert_close(spectrum_top(out), ref, rtol=1e-6, atol=0)


def test_spectrum_rgb_npz_user_model_matches_dense_g(user_module, tmp_path) -> None:
    """The issue's bar: RGB (N, 32, 32, 3) uint8 .npz, a user model on PYTHONPATH, float64."""
    name, folder = user_module
    net = make_weights(name, tmp_path / "w.pt", in_channels=3)
    raw = make_npz(tmp_path / "rgb.npz", (32, 32, 3), n=2)
    out = tmp_path / "spectrum.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(folder)])}
    cmd = [sys.executable, "-m", "leafscope.cli.main", "spectrum", "--model", f"{name}:make"]
    cmd += ["--model-args", '{"in_channels": 3}', "--weights", str(tmp_path / "w.pt")]
    cmd += ["--dataset", str(tmp_path / "rgb.npz"), "--points", "2", "--dtype", "float64"]
    cmd += ["--json", str(out), "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    x = torch.from_numpy(raw).double().permute(0, 3, 1, 2) / 255  # (N, 3, 32, 32) in [0, 1]
    ref = dense_top_eigenvalues(net.double(), x)
    torch.testing.assert_close(spectrum_top(out), ref, rtol=1e-6, atol=0)


def test_torchscript_checkpoint_and_output_flag(user_module, tmp_path, capsys) -> None:
    name, _ = user_module
    make_npz(tmp_path / "grey.npz", (28, 28), n=3)
    base = ["spectrum", "--dataset", str(tmp_path / "grey.npz"), "--points", "3", "--device", "cpu"]
    net = make_weights(name, tmp_path / "w.pt", in_channels=1)
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 1, 28, 28)), tmp_path / "net.ts")
    ts_out, user_out = tmp_path / "ts.json", tmp_path / "user.json"
    assert main([*base, "--checkpoint", str(tmp_path / "net.ts"), "--json", str(ts_out)]) == 0
    dict_model = ["--model", f"{name}:make", "--model-args", '{"as_dict": true}']
    dict_model += ["--weights", str(tmp_path / "w.pt")]
    assert main([*base, *dict_model]) == 2
    assert "pass the key of the logits" in capsys.readouterr().err
    assert main([*base, *dict_model, "--output", "logits", "--json", str(user_out)]) == 0
    torch.testing.assert_close(
        spectrum_top(ts_out, 9), spectrum_top(user_out, 9), rtol=1e-5, atol=0
    )


def test_model_option_errors_are_one_line(user_module, tmp_path, capsys) -> None:
    name, _ = user_module
    make_npz(tmp_path / "grey.npz", (28, 28), n=2)
    base = ["spectrum", "--dataset", str(tmp_path / "grey.npz"), "--points", "2"]
    cases = [
        (["--model", "absent_mod_qq:make"], "cannot import module 'absent_mod_qq'"),
        (["--model", f"{name}:nope"], "has no attribute 'nope'"),
        (["--model", f"{name}:make", "--model-args", "[1]"], "--model-args must be a JSON object"),
        (["--model", f"{name}:make", "--model-args", '{"in_channels": 3}'], "fails on inputs"),
        ([], "no model given"),
        (["--checkpoint", str(tmp_path / "x.pt"), "--model", f"{name}:make"], "not both"),
        (["--model", f"{name}:make", "--normalize", "1,2"], "MEAN:STD"),
        (["--model", f"{name}:make", "--weights", str(tmp_path / "none.pt")], "no weights file"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bar
        assert err.startswith("leafscope spectrum: error:"), err
        assert message is None or message in err, (extra, err)


def test_ood_model_sources(tmp_path, capsys) -> None:
    # --checkpoints follow the main model; --seeds trains its own and takes neither
    for argv, message in (
        (["--seeds", "1", "--checkpoint", "a.pt"], "seeds trains its own models"),
        (["--seeds", "1", "--checkpoints", "b.pt"], "seeds trains its own models"),
        (["--seeds", "1", "--model", "pkg:fn"], "seeds trains its own models"),
        ([], "no model given"),
    ):
        capsys.readouterr()
        assert main(["ood", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
