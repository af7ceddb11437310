"""``leafscope early-stopping`` (the ``early-stopping`` task, one unit per seed): a LeNet on a
few hundred MNIST images and a user model on an RGB .npz; ``nnk`` then measures the runs it
wrote."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from leafscope.cli.main import main
from leafscope.testing import shared_data_dir

DATA = shared_data_dir()
needs_mnist = pytest.mark.skipif(DATA is None, reason="shared MNIST not present")


def _run(*argv) -> int:
    return main([*map(str, argv), "--device", "cpu", "--no-progress"])


def _check_seed(result: dict, epochs: int, channels: int) -> None:
    """One seed's result: stopping epochs within range, per-channel stops recorded."""
    val, cw = result["validation"], result["cw_deepnnk"]
    assert len(val["val_accuracy"]) == len(val["test_accuracy"]) <= epochs
    assert 1 <= val["best_epoch"] <= val["stop_epoch"] <= epochs
    assert val["test_accuracy_at_best"] == val["test_accuracy"][val["best_epoch"] - 1]
    assert 1 <= cw["stop_epoch"] <= epochs
    assert len(cw["frozen_at"]) == channels
    # a channel froze at an epoch it was measured, after `patience` epochs at least, or never
    assert all(e == -1 or 2 <= e <= cw["stop_epoch"] for e in cw["frozen_at"])
    assert cw["all_frozen"] == all(e >= 0 for e in cw["frozen_at"])
    assert len(cw["channel_loo_error"]) == cw["stop_epoch"]
    assert all(len(row) == channels for row in cw["channel_loo_error"])
    assert all(0 <= e <= 1 for row in cw["channel_loo_error"] for e in row)
    assert 0 <= cw["test_accuracy"] <= 1


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """A fresh LeNet as a leafscope checkpoint (re-initialised per seed by the task)."""
    from leafscope.models import build_model
    from leafscope.training import save_checkpoint

    path = tmp_path_factory.mktemp("lenet") / "lenet.pt"
    torch.manual_seed(0)
    save_checkpoint(path, model=build_model("lenet"), epoch=0, step=0, history=[])
    return path


@needs_mnist
def test_compares_both_rules_and_nnk_reads_its_runs(lenet, tmp_path, capsys):
    doc, runs = tmp_path / "es.json", tmp_path / "runs"
    code = _run("early-stopping", "--checkpoint", lenet, "--data-dir", DATA,
                "--train-points", 400, "--val-points", 200, "--points", 150,
                "--test-points", 500, "--epochs", 3, "--lr", 0.05, "--runs-dir", runs,
                "--out", tmp_path / "res", "--json", doc)  # fmt: skip
    assert code == 0
    data = json.loads(doc.read_text())
    _check_seed(data, 3, 16)  # conv2 of LeNet: 16 channels
    assert data["per_seed"] == [{k: data[k] for k in ("validation", "cw_deepnnk")}]
    summary = data["summary"]
    assert summary["train_points"] == 400 and summary["seeds"] == [0]
    assert summary["cw_stop_epoch"]["values"] == [data["cw_deepnnk"]["stop_epoch"]]
    printed = capsys.readouterr().out
    assert "validation stopping" in printed and "CW-DeepNNK" in printed
    stop = data["cw_deepnnk"]["stop_epoch"]
    assert sorted(p.name for p in (runs / "seed0" / "cw").glob("epoch_*.pt"))[-1] == (
        f"epoch_{stop:04d}.pt"
    )
    # nnk over the CW run's epochs: leafscope wrote them for a leafscope model
    out = tmp_path / "nnk.json"
    assert _run("nnk", "--run", runs / "seed0" / "cw", "--layers", "conv2", "--data-dir", DATA,
                "--points", 40, "--test-points", 40, "--k", 5, "--no-orientation",
                "--json", out) == 0  # fmt: skip
    assert [e["epoch"] for e in json.loads(out.read_text())["epochs"]] == list(range(1, stop + 1))


def test_a_user_model_by_its_layer_names_over_two_seeds(user_model, rgb_data, tmp_path):
    """Seeds as units (one shard each); each seed re-initialises the user model; nnk measures
    the CW run with the factory as its architecture."""
    name, _, _, weights, _ = user_model
    runs, doc = tmp_path / "runs", tmp_path / "es.json"
    base = ["--model", f"{name}:make", "--dataset", rgb_data, "--layer", "conv2",
            "--val-points", 8, "--points", 20, "--epochs", 2, "--patience", 1, "--k", 4,
            "--batch-size", 8, "--lr", 0.05]  # fmt: skip
    assert _run("early-stopping", *base, "--seeds", 2, "--seed", 3, "--runs-dir", runs,
                "--shard-size", 1, "--out", tmp_path / "res", "--json", doc) == 0  # fmt: skip
    data = json.loads(doc.read_text())
    assert data["summary"]["seeds"] == [3, 4] and data["num_shards"] == 2
    for result in data["per_seed"]:
        _check_seed(result, 2, 6)  # conv2 of the user net: width + 2 = 6 channels
    s = data["summary"]["cw_test_accuracy"]
    assert s["mean"] == pytest.approx(np.mean(s["values"]))
    assert s["std"] == pytest.approx(np.std(s["values"], ddof=1))
    # the two seeds start from different initial weights (the first checkpoint of each run)
    first = [torch.load(runs / f"seed{s}" / "val" / "epoch_0000.pt") for s in (3, 4)]
    w = [f["model_state"]["conv1.weight"] for f in first]
    assert not torch.equal(w[0], w[1])
    out = tmp_path / "nnk.json"
    assert _run("nnk", "--model", f"{name}:make", "--run", runs / "seed3" / "cw", "--layers",
                "conv1", "--dataset", rgb_data, "--points", 20, "--test-points", 10, "--k", 4,
                "--json", out) == 0  # fmt: skip
    epochs = json.loads(out.read_text())["epochs"]
    assert len(epochs) == data["per_seed"][0]["cw_deepnnk"]["stop_epoch"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--train-points", "100", "--points", "500"],
            "--train-points 100 must be >= --points 500",
        ),
        (["--train-points", "30", "--val-points", "20"], "must fit in the 36 points"),
        (["--patience", "0"], "--patience must be >= 1"),
        (["--layer", "fc1"], "channels of several values"),
        (["--layer", "conv9"], "conv9"),
    ],
)
def test_bad_arguments_give_one_line(user_model, rgb_data, capsys, argv, message):
    name = user_model[0]
    assert _run("early-stopping", "--model", f"{name}:make", "--dataset", rgb_data,
                "--layer", "conv2", "--val-points", 4, "--points", 10, *argv) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_the_task_through_the_runner_in_process(rgb_data, tmp_path):
    """One row per seed; a leafscope checkpoint (its own layer names) re-initialised per seed:
    the same seed twice gives the same row."""
    from leafscope.data.spec import DataSpec
    from leafscope.execution.runner import RunOptions, make_job, run
    from leafscope.models import build_model
    from leafscope.models.spec import ModelSpec
    from leafscope.tasks.early_stopping import EarlyStoppingParams
    from leafscope.training import save_checkpoint

    net = build_model("vgg", in_channels=3, image_size=8, num_classes=3, widths=(4, 6),
                      convs_per_block=1)  # fmt: skip
    save_checkpoint(tmp_path / "vgg.pt", model=net, epoch=0, step=0, history=[])
    params = EarlyStoppingParams(
        layer="block2.0", val_points=8, points=20, epochs=2, patience=1, k=4, batch_size=8,
        lr=0.05, seed=5, seeds=2,
    )  # fmt: skip
    model = ModelSpec(checkpoint=str(tmp_path / "vgg.pt"))
    data = DataSpec(name=str(rgb_data), split="train")
    options = RunOptions(device="cpu", progress=False)
    rows = run(make_job("early-stopping", params, model=model, data=data), options).rows
    assert list(rows["seed"]) == [5, 6] and list(rows["channels"]) == [6, 6]
    assert rows["frozen_at"].shape == (2, 6)
    assert np.all((rows["cw_stop_epoch"] >= 1) & (rows["cw_stop_epoch"] <= 2))
    assert np.all(rows["validation_best_epoch"] <= rows["validation_stop_epoch"])
    one = dataclasses.replace(params, seeds=1)
    again = run(make_job("early-stopping", one, model=model, data=data), options).rows
    assert json.loads(again["result"][0]) == json.loads(rows["result"][0])
