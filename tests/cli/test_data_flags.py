"""The shared data flags: --grey / --resize applied in one place, recorded in the JSON, and a
model/data mismatch reported as one error naming both shapes and the fix."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.cli import common
from leafscope.cli.main import main
from leafscope.models import build_model
from leafscope.training import save_checkpoint


@pytest.fixture
def rgb_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", x=x, y=np.arange(6) % 10)
    return tmp_path / "rgb.npz"


@pytest.fixture
def lenet_ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("lenet")  # MNIST-shaped: (1, 28, 28)
    return save_checkpoint(tmp_path / "lenet.pt", model=model, epoch=0, step=0, history=[])


def test_spectrum_refuses_rgb_32_for_an_mnist_lenet(lenet_ckpt, rgb_npz, capsys) -> None:
    argv = [
        "spectrum",
        "--checkpoint",
        str(lenet_ckpt),
        "--dataset",
        str(rgb_npz),
        "--split",
        "all",
    ]
    assert main([*argv, "--points", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "(N, 1, 28, 28)" in err and "(N, 3, 32, 32)" in err
    assert "--grey" in err and "--resize 28,28" in err


def test_spectrum_with_grey_resize_records_them(lenet_ckpt, rgb_npz, tmp_path) -> None:
    out = tmp_path / "s.json"
    argv = ["spectrum", "--checkpoint", str(lenet_ckpt), "--dataset", str(rgb_npz), "--grey"]
    argv += [
        "--split",
        "all",
        "--resize",
        "28,28",
        "--points",
        "2",
        "--device",
        "cpu",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    dataset = json.loads(out.read_text())["dataset"]
    assert dataset["input_shape"] == [1, 28, 28]
    assert dataset["transforms"][0].startswith("grey: ITU-R 601 luma")
    assert dataset["transforms"][1] == "resize: 32x32 -> 28x28 (bilinear, antialiased)"


def test_load_data_helpers(rgb_npz) -> None:
    parser = argparse.ArgumentParser()
    common.add_data_arguments(parser)
    args = parser.parse_args(["--dataset", str(rgb_npz), "--resize", "16,20"])
    data = common.load_data(args, "test", limit=3)
    assert data.images.shape == (3, 3, 16, 20) and len(data.transforms) == 1
    bare = argparse.Namespace(dataset=str(rgb_npz))  # a command without the flags
    assert common.load_data(bare, "test").images.shape == (6, 3, 32, 32)


def test_a_set_without_a_split_needs_split_all_or_a_holdout(lenet_ckpt, tmp_path, capsys) -> None:
    """The issue's rule: test/train of a split-less set is an error, never the same points."""
    images = (torch.rand(20, 28, 28) * 255).to(torch.uint8).numpy()
    path = tmp_path / "grey.npz"
    import numpy as np

    np.savez(path, x=images, y=np.arange(20) % 2)
    argv = ["spectrum", "--checkpoint", str(lenet_ckpt), "--dataset", str(path), "--points", "4"]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no train/test split" in err
    out = tmp_path / "h.json"
    assert main([*argv, "--holdout", "0.25", "--device", "cpu", "--json", str(out)]) == 0
    held = json.loads(out.read_text())
    assert held["dataset"]["num_points"] == 5  # the held-out quarter is the test split
