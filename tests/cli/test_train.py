"""``leafscope train``: argument checks, a run on stand-in data, and a quick run on real MNIST."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

import leafscope.data as data_mod
from leafscope.cli import train as train_cmd
from leafscope.cli.main import main
from leafscope.data.dataset import ImageDataset
from leafscope.errors import InputError
from leafscope.testing import shared_data_dir
from leafscope.training import load_checkpoint, select_checkpoint


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def halves(name: str, split: str = "train", *, data_dir=None, download=True, limit=None, **kw):
    """Stand-in data: class = whether the left or the right half of the image is bright."""
    g = torch.Generator().manual_seed(0)
    n = limit or 300
    labels = torch.arange(n) % 2
    images = 0.3 * torch.rand(n, 1, 28, 28, generator=g)
    images[labels == 0, :, :, :14] += 0.6
    images[labels == 1, :, :, 14:] += 0.6
    return ImageDataset(images, labels, name, split, 2, "synthetic, [0,1]", "test")


def test_train_on_stand_in_data(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(data_mod, "load_images", halves)
    out = tmp_path / "run"
    argv = [
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--lr",
        "0.1",
        "--batch-size",
        "16",
        "--lr-step",
        "1",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert train_cmd.run(parse(*argv)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert [r["lr"] for r in metrics["history"]] == pytest.approx([0.1, 0.01])
    assert metrics["history"][-1]["val_accuracy"] == 1.0
    assert metrics["meta"]["train_points"] == 270 and metrics["meta"]["val_points"] == 30
    assert metrics["meta"]["dataset"]["normalization"] == "synthetic, [0,1]"
    assert "epoch 2:" in capsys.readouterr().out
    model = load_checkpoint(select_checkpoint(out))
    assert model.config["name"] == "mlp" and not model.training
    # Resuming a finished run keeps it; a fresh run into the same folder is refused.
    assert train_cmd.run(parse(*argv, "--resume")) == 0
    with pytest.raises(InputError, match="already holds checkpoints"):
        train_cmd.run(parse(*argv))
    capsys.readouterr()
    assert main(["train", *argv]) == 2  # the library names parameters, the command its flags
    assert (
        "pass --resume to continue that run, --overwrite to replace it" in capsys.readouterr().err
    )


def test_defaults_are_sgd_with_momentum_and_augmentations_reach_fit(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(data_mod, "load_images", halves)
    base = ["--model", "mlp", "--limit", "60", "--device", "cpu", "--no-progress"]
    assert train_cmd.run(parse(*base, "--out", str(tmp_path / "a"))) == 0
    settings = json.loads((tmp_path / "a" / "metrics.json").read_text())["settings"]
    assert (settings["optimizer"], settings["lr"], settings["momentum"]) == ("sgd", 0.01, 0.9)
    assert settings["augment"] == []
    argv = [*base, "--augment", "crop,flip", "--crop-padding", "2", "--momentum", "0"]
    assert train_cmd.run(parse(*argv, "--out", str(tmp_path / "b"))) == 0
    settings = json.loads((tmp_path / "b" / "metrics.json").read_text())["settings"]
    assert settings["momentum"] == 0.0
    assert settings["augment"] == ["RandomCrop(padding=2, fill=0.0)", "HorizontalFlip(p=0.5)"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "resnet"], "unknown --model 'resnet'"),
        (["--model", "gcn"], "unknown --model 'gcn'"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--lr", "-1"], "--lr must be > 0"),
        (["--optimizer", "rmsprop"], "unknown --optimizer"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--activation", "tanh"], "unknown --activation 'tanh'"),
        (["--augment", "crop,blur"], "unknown augmentation 'blur'"),
        (["--crop-padding", "-1"], "--crop-padding must be >= 0"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys, argv, message) -> None:
    code = main(["train", "--out", str(tmp_path / "r"), "--device", "cpu", "--limit", "20", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_quick_run_on_real_mnist(tmp_path: Path) -> None:
    shared = shared_data_dir()
    if shared is None:
        pytest.skip("shared MNIST data not present")
    out = tmp_path / "mnist"
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--model",
            "lenet",
            "--limit",
            "512",
            "--epochs",
            "1",
            "--lr",
            "0.05",
            "--momentum",
            "0.9",
            "--seed",
            "0",
            "--out",
            str(out),
            "--data-dir",
            str(shared),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    assert (out / "epoch_0001.pt").is_file() and (out / "epoch_0000.pt").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["history"][0]
    assert metrics["train_size"] + metrics["val_size"] == 512
    assert metrics["meta"]["dataset"]["name"] == "mnist"
    # One epoch of 8 steps from random init (val loss ≈ ln 10 = 2.30 at start) already helps.
    assert record["val_loss"] < metrics["initial"]["val_loss"]
    model = load_checkpoint(out / "epoch_0001.pt")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
