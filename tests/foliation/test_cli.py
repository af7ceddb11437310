"""The path, walk and involutivity commands on a small checkpoint and real MNIST points."""

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
    out = tmp_path / "inv.json"
    rc = run_cli(
        "involutivity", "--checkpoint", str(checkpoint), "--points", "2", "--inputs", "noise",
        "--json", str(out), "--fisher-points", "1", "--fisher-parameters", "fc2.weight,fc2.bias",
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["mean_dim_distribution"] == 9
    assert data["mean_dim_with_brackets"] > 9  # GeLU is not involutive
    assert len(data["points"][0]["singular_values"]) == 10 + 45
    assert data["fisher"]["space"] == "parameter"


def test_involutivity_command_rejects_unknown_inputs(run_cli, checkpoint, tmp_path, capsys):
    rc = run_cli(
        "involutivity", "--checkpoint", str(checkpoint), "--inputs", "cats",
        "--json", str(tmp_path / "x.json"),
    )  # fmt: skip
    assert rc == 2 and "noise or data" in capsys.readouterr().err
