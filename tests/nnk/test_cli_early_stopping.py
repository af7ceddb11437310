"""``leafscope early-stopping`` on a few hundred MNIST images."""

from __future__ import annotations

import json

import pytest

from leafscope.cli.main import main
from leafscope.testing import shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="shared MNIST not present")


def _run(*argv: str) -> int:
    return main(["early-stopping", *argv, "--device", "cpu", "--data-dir", str(DATA)])


def test_compares_both_rules_on_the_same_split(tmp_path, capsys):
    out = tmp_path / "es.json"
    code = _run("--train-points", "400", "--val-points", "200", "--points", "150",
                "--epochs", "3", "--lr", "0.05", "--out", str(tmp_path / "runs"),
                "--json", str(out))  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text())
    val, cw = data["validation"], data["cw_deepnnk"]
    assert len(val["val_accuracy"]) == len(val["test_accuracy"]) <= 3
    assert 1 <= val["best_epoch"] <= val["stop_epoch"] <= 3
    assert val["test_accuracy_at_best"] == val["test_accuracy"][val["best_epoch"] - 1]
    assert 1 <= cw["stop_epoch"] <= 3 and len(cw["frozen_at"]) == 16  # conv2 channels
    assert len(cw["channel_loo_error"]) == cw["stop_epoch"]
    assert all(0 <= e <= 1 for row in cw["channel_loo_error"] for e in row)
    assert data["settings"]["train_points"] == 400
    printed = capsys.readouterr().out
    assert "validation stopping" in printed and "CW-DeepNNK" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train-points", "100", "--points", "500"], "--points 500 <= --train-points"),
        (["--train-points", "59000", "--val-points", "6000"], "must fit"),
        (["--patience", "0"], "--patience must be >= 1"),
    ],
)
def test_bad_arguments(tmp_path, capsys, argv, message):
    assert _run(*argv, "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
