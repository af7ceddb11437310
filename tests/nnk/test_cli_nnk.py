"""``leafscope nnk`` (the ``nnk`` task): every epoch of a tiny LeNet run on 512 MNIST images,
and user models (a factory with weights, a TorchScript file) on an RGB .npz, their layers named
as the user named them. The MGMs equal those of leafscope.nnk on the layer's features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.cli.main import main
from leafscope.data.spec import DataSpec
from leafscope.execution.runner import RunOptions, make_job, run
from leafscope.models.features import layer_features
from leafscope.nnk.geometry import RunGeometry, loo_error, mgm_summary
from leafscope.report.results import write_result_figures
from leafscope.tasks.nnk import NNKParams
from leafscope.testing import shared_data_dir

DATA = shared_data_dir()
needs_mnist = pytest.mark.skipif(DATA is None, reason="shared MNIST not present")


def assert_close(got, want, path: str = "") -> None:
    """Nested JSON values equal, numbers to 1e-6 relative (None for NaN)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), path
        for key in want:
            assert_close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not np.isfinite(want):
        assert got is None or not np.isfinite(got), path
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), path
    else:
        assert got == want, path


def _run(*argv: str) -> int:
    return main([*map(str, argv), "--device", "cpu", "--no-progress"])


def _mnist(*argv: str) -> int:
    return _run(*argv, "--data-dir", DATA)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from leafscope.data import load_images
    from leafscope.models import build_model
    from leafscope.training import fit

    if DATA is None:
        pytest.skip("shared MNIST not present")
    run_dir = tmp_path_factory.mktemp("run")
    data = load_images("mnist", "train", data_dir=DATA, limit=512, download=False)
    torch.manual_seed(0)
    fit(build_model("lenet"), data, epochs=2, lr=0.05, momentum=0.9, out_dir=run_dir,
        progress=False, checkpoint_every_steps=4)  # fmt: skip
    return run_dir


@needs_mnist
def test_every_epoch_of_a_run_with_mgms_equal_to_leafscope_nnk(tiny_run, tmp_path, capsys):
    from leafscope.training import load_checkpoint

    out, doc = tmp_path / "res", tmp_path / "nnk.json"
    assert _mnist("nnk", "--run", tiny_run, "--layers", "conv1,fc1", "--points", 120,
                  "--test-points", 300, "--k", 10, "--out", out, "--json", doc) == 0  # fmt: skip
    data = json.loads(doc.read_text())
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    assert data["loo_layer"] == "act4" and data["n_points"] == 120
    assert data["pearson_loo_vs_test"] is None  # two epochs only
    x = _sample("mnist", 120, data_dir=DATA)  # the seeded stratified sample --points draws
    for epoch in data["epochs"]:
        assert 0 <= epoch["loo_error"] <= 1 and 0 <= epoch["test_error"] <= 1
        model = load_checkpoint(epoch["checkpoint"])
        feats = layer_features(model, x[0], ["conv1", "fc1", "act4"])
        for layer in ("conv1", "fc1"):
            s = epoch["layers"][layer]
            assert sum(s["n_neighbors"]["hist"]["counts"]) == 120
            assert 1 <= s["n_neighbors"]["mean"] <= 10
            assert_close(s, mgm_summary(feats[layer], 10, "cosine", True))
        assert epoch["loo_error"] == pytest.approx(loo_error(feats["act4"], x[1], 10))
    # the figures' data, and the report draws them from the result folder
    geometry = json.loads((out / "_files" / "nnk.json").read_text())
    assert geometry == {k: data[k] for k in geometry}
    assert RunGeometry.from_json(geometry).to_json() == geometry
    pngs = write_result_figures(out)
    assert sorted(p.name for p in pngs) == ["loo_vs_test.png", "mgm_distributions.png",
                                           "mgm_epochs.png"]  # fmt: skip
    assert all(p.parent == out / "_files" and p.stat().st_size > 0 for p in pngs)
    summary = json.loads((out / "_summary.json").read_text())["summary"]
    assert summary["checkpoints"] == 2 and summary["loo_error"] == [
        e["loo_error"] for e in data["epochs"]
    ]
    assert "Pearson" in capsys.readouterr().out


@needs_mnist
def test_step_checkpoints_and_pearson(tiny_run, tmp_path, capsys):
    doc = tmp_path / "nnk.json"
    assert _mnist("nnk", "--run", tiny_run, "--layers", "fc1", "--points", 60,
                  "--test-points", 100, "--k", 8, "--no-orientation", "--step-checkpoints",
                  "--json", doc) == 0  # fmt: skip
    data = json.loads(doc.read_text())
    # 8 steps per epoch, a step checkpoint every 4: steps 4 and 12 join the two epoch ends
    assert [e["step"] for e in data["epochs"]] == [4, 8, 12, 16]
    assert all(e["layers"]["fc1"]["orientation"] is None for e in data["epochs"])
    assert -1 <= data["pearson_loo_vs_test"] <= 1
    assert "4 checkpoint(s)" in capsys.readouterr().out


@needs_mnist
def test_bad_layers_and_points_give_one_line(tiny_run, capsys):
    assert _mnist("nnk", "--run", tiny_run, "--layers", "conv1,conv9") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "conv9" in err[0] and "conv1, act1" in err[0]
    assert _mnist("nnk", "--run", tiny_run, "--layers", "fc1", "--points", 2) == 2
    assert "--points must be >= 3" in capsys.readouterr().err
    assert _mnist("nnk", "--run", tiny_run) == 2
    assert "--layers must name at least one layer" in capsys.readouterr().err


@needs_mnist
def test_in_process_job_and_two_slices_merged_equal_one_run(tiny_run, tmp_path):
    """The task through run(job) in process, and through --out with --shard 1/2, 2/2 and
    leafscope merge: the same rows and summary as one run."""
    params = NNKParams(layers=("fc1",), run=str(tiny_run), points=50, test_points=60, k=6,
                       orientation=False)  # fmt: skip
    job = make_job("nnk", params, data=DataSpec(name="mnist", split="train", data_dir=str(DATA)),
                   shard_size=1)  # fmt: skip
    result = run(job, RunOptions(device="cpu", progress=False))
    rows = result.rows
    assert list(rows["kind"]) == ["mgm", "loo", "mgm", "loo"]
    assert list(rows["model"]) == ["epoch_0001", "epoch_0001", "epoch_0002", "epoch_0002"]
    assert list(rows["layer"]) == ["fc1", "act4", "fc1", "act4"]
    assert np.isnan(rows["loo_error"][0]) and 0 <= rows["loo_error"][1] <= 1
    one = result.payload["summary"]
    base = ["nnk", "--run", tiny_run, "--layers", "fc1", "--points", 50, "--test-points", 60,
            "--k", 6, "--no-orientation", "--shard-size", 1, "--out", tmp_path / "r"]  # fmt: skip
    assert _mnist(*base, "--shard", "1/2") == 0
    assert not (tmp_path / "r" / "_summary.json").exists()
    assert _mnist(*base, "--shard", "2/2") == 0
    assert main(["merge", str(tmp_path / "r")]) == 0
    merged = json.loads((tmp_path / "r" / "_summary.json").read_text())
    assert_close(merged["summary"], one)
    assert merged["num_shards"] == 4
    assert (tmp_path / "r" / "_files" / "nnk.json").stat().st_size > 0


def _sample(name, count: int, split: str = "train", data_dir=None):
    """``(x, y)``: the points ``--points count`` selects (seeded, stratified by label)."""
    from leafscope.data import DataSpec, select_points

    spec = DataSpec(
        name=str(name), split=split, data_dir=None if data_dir is None else str(data_dir)
    )
    points = spec.open()
    return points.take(select_points(points.labels, points=count, seed=0))


def _rgb_points(path: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _sample(path, count)


def _check_user_model(model_args: list, net, rgb_data: Path, tmp_path: Path) -> None:
    """nnk on the user model with its own layer names: the MGMs and the LOO error equal
    leafscope.nnk's on the eager model's features of those layers."""
    doc = tmp_path / "user.json"
    assert _run("nnk", *model_args, "--dataset", rgb_data, "--layers", "conv2,fc1",
                "--points", 30, "--test-points", 20, "--k", 6, "--json", doc) == 0  # fmt: skip
    data = json.loads(doc.read_text())
    (epoch,) = data["epochs"]
    x, y = _rgb_points(rgb_data, 30)
    assert tuple(x.shape) == (30, 3, 8, 8)
    feats = layer_features(net, x, ["conv2", "fc1", "act3"])
    for layer in ("conv2", "fc1"):
        assert_close(epoch["layers"][layer], mgm_summary(feats[layer], 6, "cosine"))
    # the LOO layer is the input of the last nn.Linear: the output of act3 (fc1, act3, fc2)
    assert data["loo_layer"] == "act3"
    assert epoch["loo_error"] == pytest.approx(loo_error(feats["act3"], y, 6))
    assert 0 <= epoch["test_error"] <= 1


def test_a_factory_model_with_weights_by_its_own_layer_names(user_model, rgb_data, tmp_path):
    name, _, net, weights, _ = user_model
    _check_user_model(["--model", f"{name}:make", "--weights", weights], net, rgb_data, tmp_path)


def test_a_torchscript_model_by_its_own_layer_names(user_model, rgb_data, tmp_path):
    _, _, net, _, scripted = user_model
    _check_user_model(["--checkpoint", scripted], net, rgb_data, tmp_path)


def test_a_user_factory_over_the_checkpoints_leafscope_wrote_for_it(
    user_model, rgb_data, tmp_path, capsys
):
    """A run leafscope trained from a user factory stores no model config: with --model the
    factory gives the architecture and each checkpoint its weights."""
    from leafscope.models import load_model
    from leafscope.training import fit

    name, _, _, weights, _ = user_model
    x, y = _rgb_points(rgb_data, 36)
    model = load_model(factory=f"{name}:make", weights=weights)
    fit(model, (x, y), epochs=2, lr=0.05, batch_size=12, out_dir=tmp_path / "run",
        progress=False)  # fmt: skip
    capsys.readouterr()
    assert _run("nnk", "--run", tmp_path / "run", "--layers", "conv1", "--dataset", rgb_data,
                "--points", 30) == 2  # fmt: skip
    assert "weights only" in capsys.readouterr().err  # name the architecture (a factory)
    doc = tmp_path / "run.json"
    assert _run("nnk", "--model", f"{name}:make", "--run", tmp_path / "run", "--layers", "conv1",
                "--dataset", rgb_data, "--points", 30, "--test-points", 20, "--k", 6,
                "--json", doc) == 0  # fmt: skip
    data = json.loads(doc.read_text())
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    trained = load_model(factory=f"{name}:make", weights=tmp_path / "run" / "epoch_0002.pt")
    nodes, _ = _rgb_points(rgb_data, 30)  # the points --points 30 draws
    expected = mgm_summary(layer_features(trained, nodes, ["conv1"])["conv1"], 6, "cosine")
    assert_close(data["epochs"][1]["layers"]["conv1"], expected)


def test_points_of_a_class_sorted_set_are_a_stratified_sample_not_its_first_rows(tmp_path):
    """``points`` means one thing for every task: on a set stored class by class, the NNK
    nodes come from every class (the first rows would all be class 0), seeded by the data
    seed, the same on every call."""
    from leafscope.data import DataSpec, select_points
    from leafscope.errors import InputError
    from leafscope.tasks._nnk import sample_points
    from leafscope.tasks.base import Context
    from leafscope.tasks.nnk import NNKParams

    x = np.random.default_rng(0).random((60, 4)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)  # sorted by class
    np.savez(tmp_path / "sorted.npz", x_train=x, y_train=y, x_test=x[:9], y_test=y[:9])
    points = DataSpec(name=str(tmp_path / "sorted.npz"), split="train").open()

    def context(seed):
        return Context(device=torch.device("cpu"), params=NNKParams(layers=("fc1",)), units=[],
                       models={}, data={"data": lambda: points}, seed=seed)  # fmt: skip

    _, labels = sample_points(context(0), 12)
    assert sorted(set(labels.tolist())) == [0, 1, 2] and labels.tolist().count(0) == 4
    again, _ = sample_points(context(0), 12)
    want, _ = points.take(select_points(points.labels, points=12, seed=0))
    assert torch.equal(again, want)
    other, _ = sample_points(context(1), 12)
    assert not torch.equal(other, want)
    with pytest.raises(InputError, match="`points=61` exceeds the 60 points"):
        sample_points(context(0), 61)
