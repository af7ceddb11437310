"""denoise and generate end to end on a small LeNet checkpoint and generated data (no downloads);
``ood`` and ``transfer`` are tasks, tested in tests/applications/test_ood_transfer_tasks.py."""

import argparse
import json

import pytest
import torch

from leafscope.cli import denoise, generate
from leafscope.errors import InputError
from leafscope.models import build_model
from leafscope.training import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("lenet")
    path = tmp_path_factory.mktemp("ckpt") / "epoch_0000.pt"
    save_checkpoint(path, model=model, epoch=0, step=0, history=[])
    return path


def parse(module, argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    module.register(sub)
    return parser.parse_args(argv)


def test_denoise_cli(checkpoint, tmp_path, capsys):
    out = tmp_path / "d.json"
    argv = ["denoise", "--checkpoint", str(checkpoint), "--dataset", "digits", "--sigma", "0.25"]
    argv += ["--points", "4", "--pool", "40", "--tune-points", "10", "--leaf-steps", "3"]
    argv += ["--json", str(out), "--device", "cpu"]
    args = parse(denoise, argv)
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| SSIM |" in printed and "| nl-means |" in printed and "σ=0.25 PSNR" in printed
    res = json.loads(out.read_text())["results"]
    assert [r["method"] for r in res] == [
        "noisy",
        "nearest",
        "leaf-full",
        "leaf",
        "blur",
        "pca",
        "tv",
        "nl-means",
        "wavelet",
    ]
    assert set(res[0]) >= {"method", "sigma", "psnr", "ssim", "ssim_std", "accuracy", "params"}
    assert set(res[-1]["params"]) == {"sigma_factor", "method", "wavelet", "levels"}
    with pytest.raises(InputError, match="--sigma"):
        denoise._sigmas("0.1,x")
    assert denoise._methods("noisy,tv") == ("noisy", "tv") and denoise._methods("default") is None
    with pytest.raises(InputError, match="--methods"):
        denoise._methods("noisy,median")


def test_generate_cli(checkpoint, tmp_path):
    # an untrained LeNet predicts one class almost everywhere: ask for that class
    from leafscope.data import load_images
    from leafscope.training import load_checkpoint

    data = load_images("digits", "train", limit=50)
    model = load_checkpoint(checkpoint)
    label = int(model(data.images).argmax(1).mode().values)
    data_label = torch.nonzero(data.labels == label).numel()
    if data_label == 0:
        pytest.skip("no digit of the predicted class in the first 50 images")
    argv = ["generate", "--checkpoint", str(checkpoint), "--class", str(label), "--out"]
    argv += [str(tmp_path / "g"), "--dataset", "digits", "--n", "3", "--steps", "4"]
    argv += ["--pool", "50", "--device", "cpu"]
    args = parse(generate, argv)
    try:
        assert args.func(args) == 0
    except InputError as exc:  # no start image classified correctly
        pytest.skip(str(exc))
    assert (tmp_path / "g" / "grid.png").stat().st_size > 0
    summary = json.loads((tmp_path / "g" / "generate.json").read_text())
    assert summary["kept_class"] == 1.0 and len(summary["predicted"]) == 3
