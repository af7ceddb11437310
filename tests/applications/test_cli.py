"""The four commands end to end on a small LeNet checkpoint and generated data (no downloads)."""

import argparse
import json

import pytest
import torch

from leafscope.cli import denoise, generate, ood, transfer
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


def test_transfer_cli(checkpoint, tmp_path):
    out = tmp_path / "t.json"
    argv = ["transfer", "--checkpoint", str(checkpoint), "--datasets", "digits,noise"]
    argv += ["--train-dataset", "digits", "--points", "6", "--transfer-train", "60"]
    argv += ["--transfer-val", "30", "--json", str(out), "--no-progress", "--device", "cpu"]
    args = parse(transfer, argv)
    assert args.func(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["dataset"] for r in rows] == ["digits", "noise"]
    keys = {"dataset", "median_log10_highest", "median_log10_lowest", "median_delta"}
    assert keys | {"median_log10_trace", "transfer_accuracy"} <= set(rows[0])
    assert rows[1]["transfer_accuracy"] is None and 0 <= rows[0]["transfer_accuracy"] <= 1


def test_ood_cli(checkpoint, tmp_path):
    out = tmp_path / "o.json"
    argv = ["ood", "--checkpoints", f"{checkpoint},{checkpoint}", "--in", "digits"]
    argv += ["--out", "noise", "--detectors", "msp,energy,knn", "--points", "20"]
    argv += ["--fit-points", "40", "--json", str(out), "--device", "cpu"]
    args = parse(ood, argv)
    assert args.func(args) == 0
    res = json.loads(out.read_text())["results"]
    assert [(r["detector"], r["out_dataset"], r["n_seeds"]) for r in res] == [
        ("msp", "noise", 2),
        ("energy", "noise", 2),
        ("knn", "noise", 2),
    ]
    assert all(r["auroc_std"] == 0.0 for r in res)  # the same model twice
    bad = parse(ood, ["ood", "--checkpoint", str(checkpoint), "--detectors", "nope"])
    with pytest.raises(InputError, match="unknown detectors"):
        bad.func(bad)


def test_ood_cli_trains_seeds_first(tmp_path, capsys):
    out = tmp_path / "o.json"
    argv = ["ood", "--seeds", "2", "--train-epochs", "1", "--runs-dir", str(tmp_path / "runs")]
    argv += ["--in", "digits", "--out", "noise", "--detectors", "msp,energy", "--points", "30"]
    argv += ["--fit-points", "60", "--json", str(out), "--device", "cpu"]
    args = parse(ood, argv)
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "digits-lenet-s0",
        "digits-lenet-s1",
    ]
    assert capsys.readouterr().out.count("val accuracy") == 2
    res = json.loads(out.read_text())["results"]
    assert [(r["detector"], r["n_seeds"]) for r in res] == [("msp", 2), ("energy", 2)]
    assert all(0 <= r["auroc"] <= 1 for r in res)
    assert any(r["auroc_std"] > 0 for r in res)  # two seeds, two different models


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
    """Walks from correctly classified starts keep the class, stay in the pixel box, and record
    the model's probability of the target class at the generated images."""
    import numpy as np

    from leafscope.data import load_images
    from leafscope.training import load_checkpoint

    pool, n, steps = 50, 3, 4
    data = load_images("digits", "train", limit=pool)
    model = load_checkpoint(checkpoint)
    with torch.no_grad():
        predicted = model(data.images).argmax(1)
    # the class with the most correctly classified images of the pool (an untrained LeNet
    # predicts one class almost everywhere): generate never lacks a start image
    correct = torch.bincount(data.labels[predicted == data.labels], minlength=10)
    label = int(correct.argmax())
    assert correct[label] >= 1, "no image of the pool is classified correctly"
    out = tmp_path / "g"
    argv = ["generate", "--checkpoint", str(checkpoint), "--class", str(label), "--out", str(out)]
    argv += ["--dataset", "digits", "--n", str(n), "--steps", str(steps), "--pool", str(pool)]
    argv += ["--device", "cpu"]
    args = parse(generate, argv)
    assert args.func(args) == 0
    assert (out / "grid.png").stat().st_size > 0 and list((out / "points").glob("shard-*"))
    arrays = np.load(out / "generated.npz")
    images, starts = torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["starts"])
    assert images.shape == starts.shape == (n, *data.images.shape[1:])
    assert images.min() >= 0 and images.max() <= 1  # the pixel box
    summary = json.loads((out / "generate.json").read_text())
    assert summary["class"] == label and summary["steps"] == steps
    # the starts are correctly classified training images of the class, from the pool
    index = torch.as_tensor(summary["start_index"])
    assert len(index) == n and bool(((index >= 0) & (index < pool)).all())
    assert torch.equal(starts, data.images[index].float())
    assert bool((data.labels[index] == label).all() and (predicted[index] == label).all())
    # every walk kept the class; the recorded probability is the model's for that class
    assert summary["kept_class"] == 1.0 and summary["predicted"] == [label] * n
    with torch.no_grad():
        probs = torch.softmax(model(images).double(), dim=1)
    np.testing.assert_allclose(summary["probability"], probs[:, label].numpy(), rtol=1e-4)
    np.testing.assert_allclose(arrays["probability"], summary["probability"], rtol=1e-6)
    assert all(1 / probs.shape[1] <= p <= 1 for p in summary["probability"])  # the argmax
    moved = (images - starts).flatten(1).norm(dim=1).numpy()
    np.testing.assert_allclose(summary["displacement"], moved, rtol=1e-5, atol=1e-6)
    assert all(0 <= a <= steps for a in summary["accepted_steps"]) and moved.max() > 0
