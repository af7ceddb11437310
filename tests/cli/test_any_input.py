"""Every command on data at their own shape: RGB 16×16 images (.npz) and vectors (.csv), with
zoo models (vgg, mlp) from leafscope checkpoints and a user CNN (``--model MODULE:CALLABLE``
with ``--weights``) — issue 11 item 5. Outputs are checked, not only the exit codes."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from leafscope.cli.main import main
from leafscope.data import load_images
from leafscope.models import build_model_for_input
from leafscope.training import fit, save_checkpoint

USER_MODULE = "anyinput_usercnn"
USER_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, in_channels=3, num_classes=3, width=5):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(4 * width, num_classes)

        def forward(self, x):
            return self.fc(self.pool(torch.tanh(self.conv1(x))).flatten(1))


    def make(**kwargs):
        return Net(**kwargs)
    """
)


def _rgb(n: int, side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, side, side, 3) images whose class (0, 1, 2) is their brightest channel."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 90, (n, side, side, 3)).astype(np.uint8)
    for i in range(n):
        x[i, :, :, y[i]] += 150
    return x, y


def _train(model: torch.nn.Module, data, epochs: int, **kwargs):
    return fit(model, (data.images, data.labels), epochs=epochs, lr=0.05, momentum=0.9,
               batch_size=8, progress=False, **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The data files, the checkpoints, run folders and the user module (on sys.path)."""
    d = tmp_path_factory.mktemp("anyinput")
    x, y = _rgb(24, 16, 0)
    xt, yt = _rgb(12, 16, 3)  # test images not in the training set
    np.savez(d / "rgb.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    small, ys = _rgb(12, 8, 1)
    np.savez(d / "rgb8.npz", x_train=small, y_train=ys, x_test=small, y_test=ys)
    rng = np.random.default_rng(2)
    v = rng.normal(size=(24, 5))
    labels = (v[:, 0] > 0).astype(int) + (v[:, 1] > 0)
    rows = [",".join(f"{a:.4f}" for a in r) + f",{c}" for r, c in zip(v, labels, strict=True)]
    (d / "vec.csv").write_text("a,b,c,d,e,label\n" + "\n".join(rows) + "\n")
    rgb = load_images(str(d / "rgb.npz"), "train")
    vec = load_images(str(d / "vec.csv"), "train")
    for seed in (0, 1):
        torch.manual_seed(seed)
        vgg = build_model_for_input("vgg", rgb.input_shape, 3, widths=(4, 6), convs_per_block=1)
        res = _train(vgg, rgb, 2, out_dir=d / f"vgg_run{seed}", seed=seed, overwrite=True)
    save_checkpoint(d / "vgg.pt", model=vgg, epoch=2, step=0, history=res.history)
    torch.manual_seed(0)
    mlp = build_model_for_input("mlp", vec.input_shape, 3, hidden=(12,))
    res = _train(mlp, vec, 4)
    save_checkpoint(d / "mlp.pt", model=mlp, epoch=4, step=0, history=res.history)
    (d / f"{USER_MODULE}.py").write_text(USER_SOURCE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(d))
        import anyinput_usercnn

        for channels, name in ((3, "user.pt"), (1, "user_grey.pt")):
            torch.manual_seed(0)
            net = anyinput_usercnn.make(in_channels=channels)
            _train(net, rgb if channels == 3 else load_images(str(d / "rgb.npz"), grey=True), 3)
            torch.save(net.state_dict(), d / name)
        yield SimpleNamespace(
            dir=d,
            rgb=str(d / "rgb.npz"),
            rgb8=str(d / "rgb8.npz"),
            vec=str(d / "vec.csv"),
            vgg=["--checkpoint", str(d / "vgg.pt")],
            mlp=["--checkpoint", str(d / "mlp.pt")],
            user=["--model", f"{USER_MODULE}:make", "--weights", str(d / "user.pt")],
            runs=[str(d / "vgg_run0"), str(d / "vgg_run1")],
        )
        sys.modules.pop(USER_MODULE, None)


def cli(*argv: str) -> int:
    return main([*map(str, argv), "--device", "cpu"])


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def has_colour(png: Path) -> bool:
    """Whether some pixel of the PNG has different R, G and B (a grey figure has none)."""
    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return bool((np.abs(a[..., 0] - a[..., 1]) > 30).any())


def error_of(capsys, *argv: str) -> str:
    """Run a command that must fail as a user error; its one-line message."""
    capsys.readouterr()
    assert cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("kind", ["vgg", "user", "mlp"])
def test_spectrum_on_rgb_and_vectors(world, kind, tmp_path) -> None:
    data = world.vec if kind == "mlp" else world.rgb
    out = tmp_path / "s.json"
    assert cli("spectrum", *getattr(world, kind), "--dataset", data, "--split", "all",
               "--points", 3, "--json", out) == 0  # fmt: skip
    res = read(out)
    assert res["dataset"]["input_shape"] == ([5] if kind == "mlp" else [3, 16, 16])
    for p in res["points"]:
        eig = 10 ** np.array(p["log10_eigenvalues"])
        assert 1 <= len(eig) <= 2  # at most C - 1 nonzero eigenvalues, C = 3
        assert np.isclose(10 ** p["log10_trace"], eig.sum(), rtol=1e-6)


def test_path_on_rgb_is_drawn_in_colour_and_gets_closer(world, tmp_path) -> None:
    out = tmp_path / "p"
    assert cli("path", *world.vgg, "--from", f"{world.rgb}:test:0", "--to", f"{world.rgb}:test:1",
               "--out", out, "--max-steps", 15, "--step", 0.2, "--frames", 3,
               "--no-progress") == 0  # fmt: skip
    entry = read(out / "_files" / "path.json")["paths"][0]
    assert entry["final_distance"] < entry["start_distance"]
    assert has_colour(out / "_files" / "path_000_strip.png")


def test_path_on_vectors_is_unclamped(world, tmp_path, capsys) -> None:
    out = tmp_path / "p"
    assert cli("path", *world.mlp, "--from", f"{world.vec}:all:0", "--to", f"{world.vec}:all:3",
               "--out", out, "--max-steps", 20, "--no-progress") == 0  # fmt: skip
    files = out / "_files"
    entry = read(files / "path.json")["paths"][0]
    assert entry["final_distance"] < entry["start_distance"]
    start = load_images(world.vec, "test").images[0]
    with np.load(files / "path_000.npz") as kept:
        assert np.allclose(kept["points"][0], start.numpy(), atol=1e-5)  # not clamped
    assert not list(files.glob("*.gif")) and not list(files.glob("*.png"))  # vectors: arrays
    msg = error_of(capsys, "path", *world.mlp, "--from", f"{world.vec}:all:0", "--to",
                   f"{world.vec}:all:1", "--out", tmp_path / "q", "--flip-target")  # fmt: skip
    assert "flip_target" in msg and "vector" in msg
    msg = error_of(capsys, "path", *world.vgg, "--from", f"{world.rgb8}:test:0", "--to",
                   f"{world.rgb}:test:1", "--out", tmp_path / "r")  # fmt: skip
    assert "--resize 16,16" in msg


def test_walk_on_vectors_and_rgb(world, tmp_path) -> None:
    common = ["--pairs", 1, "--pool", 6, "--max-steps", 4, "--vertical-points", 2,
              "--vertical-steps", 3, "--no-progress"]  # fmt: skip
    for name, (model, data, split) in {
        "mlp": (world.mlp, world.vec, "all"),  # a .csv has no train/test split
        "vgg": (world.vgg, world.rgb, "test"),
    }.items():
        out = tmp_path / f"w_{name}.json"
        assert cli("walk", *model, "--dataset", data, "--split", split, *common, "--json", out,
                   "--out", tmp_path / name) == 0  # fmt: skip
        res = read(out)
        h = res["horizontal"]
        assert h["median_final_distance"] < h["median_start_distance"]
        assert [v["step"] for v in res["vertical"]] == [0, 3]
        assert read(tmp_path / name / "_files" / "walk.json")["horizontal"] == h


def test_involutivity_noise_takes_the_shape_of_the_data(world, tmp_path) -> None:
    out = tmp_path / "i.json"
    assert cli("involutivity", *world.user, "--dataset", world.rgb, "--points", 1,
               "--json", out) == 0  # fmt: skip
    res = read(out)["summary"]
    assert res["inputs"] == "noise" and res["mean_dim_distribution"] == 2  # C - 1 fields
    assert len(read(out)["points"][0]["fields_singular_values"]) == 3
    assert cli("involutivity", *world.mlp, "--dataset", world.vec, "--split", "all", "--points", 1,
               "--json", out) == 0  # fmt: skip
    assert read(out)["summary"]["mean_dim_distribution"] == 2
    assert len(read(out)["points"][0]["singular_values"]) == 5  # min(3 + 3 rows, 5 coordinates)


TRANSFER = ["--points", 3, "--transfer-train", 12, "--transfer-val", 6, "--no-progress"]


def test_transfer_compares_rgb_with_noise_of_its_shape(world, tmp_path) -> None:
    out = tmp_path / "t.json"
    base = ["transfer", *world.vgg, "--dataset", world.rgb, *TRANSFER]
    assert cli(*base, "--datasets", f"{world.rgb},noise", "--json", out) == 0
    rows = {r["dataset"]: r for r in read(out)["summary"]["rows"]}
    assert set(rows) == {world.rgb, "noise"}
    assert rows[world.rgb]["training_distance"] < rows["noise"]["training_distance"]


def test_transfer_compares_sets_of_one_shape(world, tmp_path, capsys) -> None:
    out = tmp_path / "t.json"
    base = ["transfer", *world.vgg, "--dataset", world.rgb, *TRANSFER]
    msg = error_of(capsys, *base, "--datasets", f"{world.rgb},{world.rgb8}")
    assert "(N, 3, 8, 8)" in msg and "--resize 16,16" in msg
    assert cli(*base, "--datasets", world.rgb8, "--resize", "16,16", "--json", out) == 0
    row = read(out)["summary"]["rows"][0]
    assert row["points"] == 3 and 0 <= row["transfer_accuracy"] <= 1


def test_ood_on_rgb_with_noise_of_its_shape(world, tmp_path) -> None:
    out = tmp_path / "o.json"
    assert cli("ood", *world.vgg, "--in", world.rgb, "--ood", f"noise,{world.rgb8}",
               "--resize", "16,16", "--detectors", "msp,energy", "--points", 6,
               "--fit-points", 12, "--json", out) == 0  # fmt: skip
    rows = read(out)["summary"]["results"]
    assert len(rows) == 4  # 2 detectors × 2 out sets
    assert all(0.0 <= r["auroc"] <= 1.0 for r in rows)
    assert cli("ood", *world.mlp, "--in", world.vec, "--holdout", 0.25, "--ood", "noise",
               "--detectors", "msp", "--points", 6, "--fit-points", 12,
               "--json", out) == 0  # fmt: skip
    assert len(read(out)["summary"]["results"]) == 1


def test_ood_on_rgb_sets_of_one_shape(world, tmp_path) -> None:
    out = tmp_path / "o.json"
    assert cli("ood", *world.vgg, "--in", world.rgb, "--ood", world.rgb8, "--resize", "16,16",
               "--detectors", "msp,energy", "--points", 6, "--fit-points", 12, "--json",
               out) == 0  # fmt: skip
    rows = read(out)["summary"]["results"]
    assert [r["detector"] for r in rows] == ["msp", "energy"]
    assert all(0.0 <= r["auroc"] <= 1.0 for r in rows)


@pytest.mark.parametrize("colour", ["grey", "rgb"])
def test_denoise_improves_psnr_and_draws_the_data(world, colour, tmp_path) -> None:
    out = tmp_path / "d"
    model = world.user if colour == "rgb" else [
        "--model", f"{USER_MODULE}:make", "--model-args", '{"in_channels": 1}',
        "--weights", world.dir / "user_grey.pt", "--grey"]  # fmt: skip
    assert cli("denoise", *model, "--dataset", world.rgb, "--points", 3, "--pool", 12,
               "--tune-points", 3, "--leaf-steps", 3, "--sigma", 0.3, "--out", out,
               "--no-progress") == 0  # fmt: skip
    psnr = {r["method"]: r["psnr"] for r in read(out / "_summary.json")["summary"]["results"]}
    assert max(v for k, v in psnr.items() if k != "noisy") > psnr["noisy"]
    assert has_colour(out / "_files" / "denoise_strips.png") == (colour == "rgb")


def test_generate_on_rgb_and_vectors(world, tmp_path) -> None:
    out = tmp_path / "g"
    assert cli("generate", *world.vgg, "--dataset", world.rgb, "--class", 1, "--points", 2,
               "--steps", 3, "--pool", 12, "--out", out, "--no-progress") == 0  # fmt: skip
    with np.load(out / "_files" / "generated.npz") as arrays:
        assert arrays["images"].shape == (2, 3, 16, 16)
        assert arrays["images"].min() >= 0 and arrays["images"].max() <= 1
    assert has_colour(out / "_files" / "grid.png")
    out = tmp_path / "g-vectors"
    assert cli("generate", *world.mlp, "--dataset", world.vec, "--split", "all", "--class", 0,
               "--points", 2, "--steps", 3, "--pool", 24, "--out", out,
               "--no-progress") == 0  # fmt: skip
    with np.load(out / "_files" / "generated.npz") as arrays:
        assert arrays["images"].shape == (2, 5)
    assert read(out / "_summary.json")["summary"]["kind"] == "vectors"


def test_nnk_and_stability_on_rgb_runs(world, tmp_path) -> None:
    out = tmp_path / "n.json"
    assert cli("nnk", "--run", world.runs[0], "--layers", "block1,block2", "--points", 8,
               "--test-points", 6, "--k", 3, "--dataset", world.rgb,
               "--json", out) == 0  # fmt: skip
    res = read(out)
    assert len(res["epochs"]) == 2 and res["n_points"] == 8
    assert all(0 <= e["loo_error"] <= 1 for e in res["epochs"])
    assert cli("stability", "--runs", ",".join(world.runs), "--layers", "block2", "--points", 8,
               "--k", 3, "--dataset", world.rgb, "--json", out) == 0  # fmt: skip
    s = read(out)["layers"]["block2"]["summary"]
    assert 0.0 <= s["nnk_jaccard"] <= 1.0 and 0.0 <= s["knn_jaccard"] <= 1.0


def test_invariance_rotates_rgb_and_refuses_vectors(world, tmp_path, capsys) -> None:
    out = tmp_path / "v.json"
    assert cli("invariance", "--models", f"a={world.runs[0]}", "--layers", "block2",
               "--points", 4, "--angles", "20,40", "--dataset", world.rgb,
               "--json", out) == 0  # fmt: skip
    diameters = read(out)["results"]["a"]["block2"]["diameter"]
    assert len(diameters) == 4 and all(d >= 0 for d in diameters)
    msg = error_of(capsys, "invariance", "--models", f"m={world.dir / 'mlp.pt'}", "--layers",
                   "fc1", "--points", 4, "--dataset", world.vec, "--split", "all")  # fmt: skip
    assert "rotates images" in msg and "vectors" in msg
    msg = error_of(capsys, "denoise", *world.mlp, "--dataset", world.vec, "--split", "all",
                   "--points", 2)  # fmt: skip
    assert "works on images" in msg and "vectors of shape (5,)" in msg


def test_thermo_lists_one_temperature_per_filter_of_the_layer(world, tmp_path, capsys) -> None:
    out = tmp_path / "th.json"
    base = ["thermo-filters", "--dataset", world.rgb, "--seeds", 1, "--epochs", 1,
            "--batch-size", 8, "--no-progress", "--json", out]  # fmt: skip
    zoo = [
        "--model",
        "leafscope.models:build_model",
        "--model-args",
        '{"name": "vgg", "in_channels": 3, "image_size": 16, "widths": [4, 6], '
        '"convs_per_block": 1}',
    ]
    for model, layer, filters in (
        (["--model", f"{USER_MODULE}:make"], "conv1", 5),  # the user's own layer name
        (zoo, "block1.0", 4),
    ):
        assert cli(*base, *model, "--layer", layer) == 0
        res = read(out)
        (temps,) = [s["temperatures"] for s in res["per_seed"]]
        assert len(temps) == filters and all(t >= 0 for t in temps) and max(temps) > 0
        assert res["dataset"]["input_shape"] == [3, 16, 16]
        assert res["rows"][0]["condition"] == "original" and len(res["rows"]) == 4
        assert all(0 <= r["accuracy_mean"] <= 1 for r in res["rows"])
    msg = error_of(capsys, *base, *zoo, "--layer", "fc")
    assert "not a convolution" in msg
    assert "vectors" in error_of(capsys, *base[:1], "--dataset", world.vec, "--holdout", 0.25,
                                 "--layer", "fc1")  # fmt: skip


def test_early_stopping_on_the_model_given(world, tmp_path, capsys) -> None:
    out = tmp_path / "e.json"
    base = ["early-stopping", "--runs-dir", tmp_path / "es", "--val-points", 6, "--points", 8,
            "--epochs", 2, "--patience", 1, "--k", 3, "--batch-size", 8]  # fmt: skip
    assert cli(*base, "--dataset", world.rgb, *world.vgg, "--layer", "block2.0",
               "--json", out) == 0  # fmt: skip
    res = read(out)
    assert 0.0 <= res["cw_deepnnk"]["test_accuracy"] <= 1.0
    assert len(res["cw_deepnnk"]["frozen_at"]) == 6  # one per channel of block2.0
    assert len(res["validation"]["val_accuracy"]) >= 1
    msg = error_of(capsys, *base, "--dataset", world.vec, "--holdout", 0.25, *world.mlp,
                   "--layer", "fc1")  # fmt: skip
    assert "channels" in msg and "vectors" in msg


def test_early_stopping_on_a_user_model(world, tmp_path) -> None:
    out = tmp_path / "e.json"
    assert cli("early-stopping", "--runs-dir", tmp_path / "es", "--val-points", 6, "--points", 8,
               "--epochs", 1, "--patience", 1, "--k", 3, "--batch-size", 8, "--dataset",
               world.rgb, "--model", f"{USER_MODULE}:make", "--layer", "conv1",
               "--json", out) == 0  # fmt: skip
    assert len(read(out)["cw_deepnnk"]["frozen_at"]) == 5


def test_train_builds_the_zoo_model_for_vectors(world, tmp_path) -> None:
    from leafscope.training import load_checkpoint, select_checkpoint

    out = tmp_path / "run"
    assert cli("train", "--model", "mlp", "--dataset", world.vec, "--epochs", 1,
               "--batch-size", 8, "--out", out, "--no-progress") == 0  # fmt: skip
    model = load_checkpoint(select_checkpoint(out))
    assert model.config["in_features"] == 5 and model(torch.rand(2, 5)).shape == (2, 3)


def test_figures_draw_rgb_in_colour_grey_in_grey_and_vectors_as_bars(tmp_path) -> None:
    from leafscope.report.figures.applications import denoising_strips, image_grid
    from leafscope.report.save import save_figure

    rgb = torch.zeros(2, 3, 6, 6)
    rgb[:, 0] = 1.0  # pure red
    for images, colour in ((rgb, True), (rgb[:, :1], False)):
        save_figure(image_grid(images, [0, 1], [0.5, 0.5]), tmp_path / "g.png")
        assert has_colour(tmp_path / "g.png") == colour
    fig = denoising_strips({"clean": torch.rand(3, 7), "noisy": torch.rand(3, 7)}, n=3)
    assert all(len(ax.patches) == 7 for ax in fig.axes)  # one bar per feature
