"""The path, walk and involutivity commands on a small checkpoint and real MNIST points
(involutivity: on noise of the data's shape, and on points of sklearn's digits)."""

from __future__ import annotations

import json

import pytest
import torch

from leafscope.cli import main as cli_main
from leafscope.models import build_model
from leafscope.testing import shared_data_dir
from leafscope.training import save_checkpoint

needs_mnist = pytest.mark.skipif(shared_data_dir() is None, reason="shared MNIST not present")


@pytest.fixture
def run_cli(monkeypatch):
    names = list(cli_main.COMMANDS)
    for extra in ("path", "walk", "involutivity"):
        if extra not in names:
            names.append(extra)
    monkeypatch.setattr(cli_main, "COMMANDS", names)
    return lambda *argv: cli_main.main([*argv, "--device", "cpu"])


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", activation="gelu", hidden=(16,))
    return save_checkpoint(tmp_path / "epoch_0001.pt", model=model, epoch=1, step=1, history=[])


@needs_mnist
def test_path_command_writes_strip_json_and_resumable_state(run_cli, checkpoint, tmp_path):
    out = tmp_path / "path"
    rc = run_cli(
        "path", "--checkpoint", str(checkpoint), "--from", "mnist:test:0", "--to",
        "mnist:test:1", "--out", str(out), "--max-steps", "8", "--json", str(tmp_path / "p.json"),
    )  # fmt: skip
    assert rc == 0
    assert (out / "path_strip.png").stat().st_size > 0
    data = json.loads((out / "path.json").read_text())
    entry = data["paths"][0]
    assert entry["steps"] == 8 and entry["stop_reason"] == "max_steps"
    assert len(entry["predicted"]) == len(entry["max_prob"]) == len(entry["distance"]) == 9
    assert entry["start_label"] == 7 and entry["end_label"] == 2  # MNIST test labels 0 and 1
    assert (out / "state.pt").exists()
    assert json.loads((tmp_path / "p.json").read_text())["paths"][0]["steps"] == 8


@needs_mnist
def test_path_command_bad_points_give_one_line_errors(run_cli, checkpoint, tmp_path, capsys):
    common = ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "x")]
    assert run_cli("path", *common, "--from", "mnist:test:0", "--to", "mnist:test:99999") == 2
    assert "out of range" in capsys.readouterr().err
    assert run_cli("path", *common, "--from", "mnist:test:3", "--to", "mnist:test:3") == 2
    assert "same point" in capsys.readouterr().err
    assert run_cli("path", *common, "--from", "mnist:test:0", "--to", "mnist:nope:1") == 2


@needs_mnist
def test_walk_command_json_keys(run_cli, checkpoint, tmp_path):
    out = tmp_path / "walk.json"
    rc = run_cli(
        "walk", "--checkpoint", str(checkpoint), "--pairs", "2", "--max-steps", "5",
        "--pool", "20", "--vertical-points", "4", "--vertical-steps", "10", "--json", str(out),
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    h = data["horizontal"]
    for key in ("reached_fraction", "median_final_distance", "median_relative_distance"):
        assert key in h
    assert 0.0 <= h["end_class_match"] <= 1.0
    assert {"distance", "accuracy"} <= set(data["vertical"][0]) and data["random"]


def test_involutivity_command_on_noise(run_cli, checkpoint, tmp_path):
    """GeLU fields are not involutive: the brackets raise the rank above dim D = C - 1 = 9, on
    the published noise draw (of the data set's point shape: only its shape is used), and the
    Fisher test runs on the first point."""
    out = tmp_path / "inv.json"
    rc = run_cli(
        "involutivity", "--checkpoint", str(checkpoint), "--points", "2", "--inputs", "noise",
        "--dataset", "digits", "--json", str(out), "--fisher-points", "1",
        "--fisher-parameters", "fc2.weight,fc2.bias", "--no-progress",
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    summary = data["summary"]
    assert summary["mean_dim_distribution"] == 9 and summary["inputs"] == "noise"
    assert summary["mean_dim_with_brackets"] > 9  # GeLU is not involutive
    assert summary["ceiling"] == 9 + 36
    assert len(data["points"]) == 2 and [p["index"] for p in data["points"]] == [0, 1]
    assert len(data["points"][0]["singular_values"]) == 10 + 45
    assert summary["fisher"]["space"] == "parameter" and len(data["fisher_points"]) == 1
    from leafscope.foliation import involutivity
    from leafscope.training import load_checkpoint

    x = torch.rand((2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    want = involutivity(load_checkpoint(checkpoint), x, rtol=1e-10)
    assert [p["dim_with_brackets"] for p in data["points"]] == want.dim_with_brackets


def test_involutivity_command_on_data_points(run_cli, checkpoint, tmp_path):
    out = tmp_path / "inv.json"
    rc = run_cli(
        "involutivity", "--checkpoint", str(checkpoint), "--inputs", "data", "--dataset",
        "digits", "--indices", "4,2", "--json", str(out), "--no-progress",
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    from leafscope.data import load_images

    labels = load_images("digits", "test").labels
    assert [p["index"] for p in data["points"]] == [4, 2]
    assert [p["label"] for p in data["points"]] == [int(labels[4]), int(labels[2])]
    assert data["summary"]["inputs"] == "data" and data["summary"]["mean_dim_distribution"] == 9


def test_involutivity_command_rejects_bad_input(run_cli, checkpoint, tmp_path, capsys):
    common = ["--checkpoint", str(checkpoint), "--dataset", "digits"]
    common += ["--json", str(tmp_path / "x.json")]
    assert run_cli("involutivity", *common, "--inputs", "cats") == 2
    assert "--inputs must be one of noise, data" in capsys.readouterr().err
    assert run_cli("involutivity", *common, "--rtol", "2") == 2
    assert "--rtol must be in (0, 1)" in capsys.readouterr().err
    assert run_cli("involutivity", *common, "--fisher-points", "1",
                   "--fisher-parameters", "nope.weight") == 2  # fmt: skip
    assert "unknown parameter names ['nope.weight']" in capsys.readouterr().err
