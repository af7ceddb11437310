"""denoise and generate end to end on a small LeNet checkpoint and generated data (no downloads),
also on RGB .npz images with a user factory + weights and with the same network as a TorchScript
file. ``ood`` and ``transfer`` are tested in tests/applications/test_ood_transfer_tasks.py."""

import json
import sys
import textwrap

import numpy as np
import pytest
import torch

from leafscope.cli.main import main
from leafscope.models import build_model
from leafscope.training import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("lenet")
    path = tmp_path_factory.mktemp("ckpt") / "epoch_0000.pt"
    save_checkpoint(path, model=model, epoch=0, step=0, history=[])
    return path


def test_denoise_cli(checkpoint, tmp_path, capsys):
    out = tmp_path / "d.json"
    argv = ["denoise", "--checkpoint", str(checkpoint), "--dataset", "digits", "--sigma", "0.25"]
    argv += ["--points", "4", "--pool", "40", "--tune-points", "10", "--leaf-steps", "3"]
    argv += ["--json", str(out), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| SSIM |" in printed and "| nl-means |" in printed and "σ=0.25 PSNR" in printed
    document = json.loads(out.read_text())
    res = document["summary"]["results"]
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
    assert list(res[-1]["params"]) == ["sigma_factor", "method", "wavelet", "levels"]
    assert all(r["points"] == 4 and 0 <= r["accuracy"] <= 1 for r in res)
    settings = document["summary"]["settings"]
    assert settings["test_points"] == 4 and settings["pool_points"] == 30  # 40 - 10 tuning
    assert len(document["selection"]) and document["num_units"] == 4
    for bad, message in ((["--sigma", "0.1,x"], "--sigma must be a number"),
                         (["--methods", "noisy,median"], "methods: unknown ['median']"),
                         (["--sigma", "0"], "--sigma values must be > 0")):  # fmt: skip
        assert main([*argv, *bad]) == 2
        assert message in capsys.readouterr().err


def test_generate_cli(checkpoint, tmp_path, capsys):
    """Walks from correctly classified starts keep the class, stay in the pixel box, and record
    the model's probability of the target class at the generated images."""
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
    argv += ["--dataset", "digits", "--points", str(n), "--steps", str(steps), "--pool", str(pool)]
    argv += ["--device", "cpu", "--no-progress", "--json", str(tmp_path / "g.json")]
    assert main(argv) == 0
    assert f"{n} images of class {label}: kept class 100%" in capsys.readouterr().out
    assert (out / "_files" / "grid.png").stat().st_size > 0
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["summary"]["kept_class"] == 1.0 and summary["summary"]["walks"] == n
    walks = json.loads((tmp_path / "g.json").read_text())["walks"]
    assert json.loads((out / "_files" / "generate.json").read_text())["walks"] == walks
    assert walks["predicted"] == [label] * n
    index = torch.as_tensor(walks["start_index"])
    assert len(index) == n and bool(((index >= 0) & (index < pool)).all())
    # the starts are correctly classified training images of the class, from the pool
    assert bool((data.labels[index] == label).all() and (predicted[index] == label).all())
    with np.load(out / "_files" / "generated.npz") as arrays:
        images, starts = torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["starts"])
    assert images.shape == starts.shape == (n, *data.images.shape[1:])
    assert torch.equal(starts, data.images[index].float())
    assert images.min() >= 0 and images.max() <= 1  # the pixel box
    with torch.no_grad():
        probs = torch.softmax(model(images).double(), dim=1)
    if "probability" in walks:  # the recorded probability is the model's for that class
        np.testing.assert_allclose(walks["probability"], probs[:, label].numpy(), rtol=1e-4)
    assert bool((probs.argmax(1) == label).all())
    moved = (images - starts).flatten(1).norm(dim=1).numpy()
    assert moved.min() > 0
    if "displacement" in walks:
        np.testing.assert_allclose(walks["displacement"], moved, rtol=1e-5, atol=1e-6)
    assert main(argv[:3] + argv[5:]) == 2  # no --class
    assert "needs the class to generate" in capsys.readouterr().err


USER_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, in_channels=3, num_classes=3, width=5):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.head = nn.Linear(4 * width, num_classes)

        def forward(self, x):
            return self.head(self.pool(torch.tanh(self.conv(x))).flatten(1)) * 2.0


    def make(**kwargs):
        return Net(**kwargs)
    """
)


@pytest.fixture
def rgb_user_model(tmp_path, monkeypatch):
    """An RGB (N, 16, 16, 3) uint8 .npz, a user factory with its weights and the same network
    as a TorchScript file (its logits are scaled after the last nn.Linear: no penultimate
    layer to find)."""
    name = f"apps_usernet_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    x = rng.integers(0, 90, (30, 16, 16, 3)).astype(np.uint8)
    for i in range(30):
        x[i, :, :, y[i]] += 150
    np.savez(tmp_path / "rgb.npz", x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    import importlib

    torch.manual_seed(0)
    net = importlib.import_module(name).make().eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 16, 16)), tmp_path / "net.ts")
    images = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        predicted = net(images[:20]).argmax(1)
    hits = predicted[predicted == torch.from_numpy(y[:20])]
    yield {
        "npz": str(tmp_path / "rgb.npz"),
        "factory": ["--model", f"{name}:make", "--weights", str(tmp_path / "w.pt")],
        "torchscript": ["--checkpoint", str(tmp_path / "net.ts")],
        "label": int(hits.mode().values) if len(hits) else None,
        "train": images[:20],
    }
    sys.modules.pop(name, None)


def _denoise_and_generate(model_flags, world, tmp_path) -> tuple[dict, np.ndarray]:
    common = [*model_flags, "--dataset", world["npz"], "--device", "cpu", "--no-progress"]
    out = tmp_path / "d"
    argv = ["denoise", *common, "--points", "4", "--pool", "20", "--tune-points", "4"]
    argv += ["--leaf-steps", "3", "--sigma", "0.3", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "_summary.json").read_text())["summary"]["results"]
    assert (out / "_files" / "denoise_strips.png").stat().st_size > 0
    if world["label"] is None:
        pytest.skip("the random user model classifies no training image correctly")
    gen = tmp_path / "g"
    argv = ["generate", *common, "--class", str(world["label"]), "--points", "3", "--steps", "3"]
    assert main([*argv, "--pool", "20", "--out", str(gen)]) == 0
    with np.load(gen / "_files" / "generated.npz") as arrays:
        images = arrays["images"]
        assert (arrays["predicted"] == world["label"]).all()  # the walks keep the class
        assert np.array_equal(arrays["starts"], world["train"][arrays["start_index"]].numpy())
    return results, images


def test_denoise_and_generate_take_a_factory_and_weights_on_rgb_npz(rgb_user_model, tmp_path):
    results, images = _denoise_and_generate(rgb_user_model["factory"], rgb_user_model, tmp_path)
    psnr = {r["method"]: r["psnr"] for r in results}
    assert max(v for k, v in psnr.items() if k != "noisy") > psnr["noisy"]
    assert all(0 <= r["accuracy"] <= 1 and r["points"] == 4 for r in results)
    assert images.shape == (3, 3, 16, 16) and images.min() >= 0 and images.max() <= 1


def test_denoise_and_generate_take_torchscript_on_rgb_npz(rgb_user_model, tmp_path):
    """The same network as a TorchScript file gives the factory's numbers."""
    world = rgb_user_model
    ts_results, ts_images = _denoise_and_generate(world["torchscript"], world, tmp_path / "ts")
    results, images = _denoise_and_generate(world["factory"], world, tmp_path / "factory")
    for a, b in zip(ts_results, results, strict=True):
        assert a["method"] == b["method"] and a["params"] == b["params"]
        for key in ("psnr", "ssim", "accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), (a["method"], key)
    np.testing.assert_allclose(ts_images, images, rtol=0, atol=1e-4)
