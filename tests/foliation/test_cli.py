"""The path, walk and involutivity commands on a small checkpoint and real MNIST points
(involutivity: on noise of the data's shape, and on points of sklearn's digits)."""

from __future__ import annotations

import json

import numpy as np
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


def _rows(folder):
    """Every row of a result folder, by column."""
    from leafscope.execution.results import ResultFolder

    settings = json.loads((folder / "_settings.json").read_text())["settings"]
    return ResultFolder(folder).read_columns(settings["num_shards"])


def _mnist_test(indices):
    from leafscope.data import load_images

    data = load_images("mnist", "test", data_dir=shared_data_dir(), limit=max(indices) + 1)
    return data.images[list(indices)], data.labels[list(indices)]


@needs_mnist
def test_path_command_writes_strip_animation_json_and_rows(run_cli, checkpoint, tmp_path):
    out = tmp_path / "path"
    rc = run_cli(
        "path", "--checkpoint", str(checkpoint), "--from", "mnist:test:0", "--to",
        "mnist:test:1", "--out", str(out), "--max-steps", "8", "--json", str(tmp_path / "p.json"),
        "--data-dir", str(shared_data_dir()), "--no-progress",
    )  # fmt: skip
    assert rc == 0
    files = out / "_files"
    assert (files / "path_000_strip.png").stat().st_size > 0
    assert (files / "path_000.gif").read_bytes()[:6] == b"GIF89a"
    entry = json.loads((files / "path.json").read_text())["paths"][0]
    assert entry["steps"] == 8 and entry["stop_reason"] == "max_steps"
    assert len(entry["predicted"]) == len(entry["max_prob"]) == len(entry["distance"]) == 9
    assert all(0 < p <= 1 for p in entry["max_prob"])  # the probabilities of every step
    assert entry["start_label"] == 7 and entry["end_label"] == 2  # MNIST test labels 0 and 1
    assert json.loads((tmp_path / "p.json").read_text())["paths"][0]["steps"] == 8
    # the path starts at the given point and its distances are to the given end point
    (x0, x1), _ = _mnist_test([0, 1])
    kept = np.load(files / "path_000.npz")
    assert kept["steps"][0] == 0 and kept["steps"][-1] == 8
    assert np.array_equal(kept["points"][0], x0.numpy())
    for point, d in zip(kept["points"], kept["distance"], strict=True):
        assert np.linalg.norm(point - x1.numpy()) == pytest.approx(d, rel=1e-5)
    assert np.linalg.norm(x0 - x1) == pytest.approx(entry["start_distance"], rel=1e-6)
    assert entry["final_distance"] < entry["start_distance"]  # it moved toward the end
    # steps of 0.1: the length is at most 8 steps, the displacement at least the gain
    assert entry["length"] <= 0.8 + 1e-5
    assert entry["start_distance"] - entry["final_distance"] <= entry["length"] + 1e-5


@needs_mnist
def test_path_sharded_over_pairs_merges_to_the_rows_of_one_run(run_cli, checkpoint, tmp_path):
    common = [
        "path", "--checkpoint", str(checkpoint), "--from", "mnist:test:0,mnist:test:2",
        "--to", "mnist:test:1", "--max-steps", "4", "--shard-size", "1", "--no-progress",
        "--data-dir", str(shared_data_dir()),
    ]  # fmt: skip
    assert run_cli(*common, "--out", str(tmp_path / "one")) == 0
    sliced = tmp_path / "sliced"
    assert run_cli(*common, "--out", str(sliced), "--shard", "1/2") == 0
    assert not (sliced / "_summary.json").exists()
    assert run_cli(*common, "--out", str(sliced), "--shard", "2/2") == 0  # the last: complete
    assert cli_main.main(["merge", str(sliced)]) == 0  # verifies the shards, merges again
    one, merged = _rows(tmp_path / "one"), _rows(sliced)
    assert sorted(one) == sorted(merged) and len(one["unit"]) == 2
    for name in one:
        assert np.array_equal(one[name], merged[name], equal_nan=one[name].dtype.kind == "f"), name
    assert [str(s) for s in one["start"]] == ["mnist:test:0", "mnist:test:2"]
    assert [str(s) for s in one["end"]] == ["mnist:test:1"] * 2  # one end shared by both
    summary = json.loads((sliced / "_summary.json").read_text())
    assert (
        summary["summary"]
        == json.loads((tmp_path / "one" / "_summary.json").read_text())["summary"]
    )
    assert (sliced / "_files" / "path_001_strip.png").exists()


@needs_mnist
def test_path_command_bad_points_give_one_line_errors(run_cli, checkpoint, tmp_path, capsys):
    common = ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "x")]
    common += ["--data-dir", str(shared_data_dir())]
    assert run_cli("path", *common, "--from", "mnist:test:0", "--to", "mnist:test:99999") == 2
    assert "out of range" in capsys.readouterr().err
    assert run_cli("path", *common, "--from", "mnist:test:3", "--to", "mnist:test:3") == 2
    err = capsys.readouterr().err
    assert "same point" in err and err.count("\n") == 1 and "--to" in err
    assert run_cli("path", *common, "--from", "mnist:test:0", "--to", "mnist:nope:1") == 2
    assert "--to" in capsys.readouterr().err
    assert run_cli("path", *common, "--from", "", "--to", "mnist:test:1") == 2
    assert "--from needs at least one point" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing left behind by refused runs


def test_path_task_in_process_on_vectors_and_torchscript(tmp_path):
    """A user model on vector data, then the same model as TorchScript: the same paths."""
    from leafscope.data.spec import DataSpec
    from leafscope.execution.runner import RunOptions, make_job, run
    from leafscope.models.spec import ModelSpec
    from leafscope.tasks.path import PathParams
    from leafscope.testing import tiny_mlp

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(10, 12, generator=gen) * 4
    np.savez(tmp_path / "v.npz", x_test=x.numpy(), y_test=np.arange(10) % 4)
    model = tiny_mlp(n_in=12)
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.ts"))
    params = PathParams(start=("0", "2"), end=("5", "7"), max_steps=30, step=0.2)
    data = DataSpec(name=str(tmp_path / "v.npz"), split="test")
    rows = {}
    for name, spec in (
        ("eager", ModelSpec(factory="leafscope.testing:tiny_mlp", factory_kwargs='{"n_in": 12}')),
        ("script", ModelSpec(checkpoint=str(tmp_path / "m.ts"))),
    ):
        job = make_job("path", params, model=spec, data=data)
        result = run(job, RunOptions(device="cpu", progress=False))
        rows[name] = result.rows
        assert len(result.rows["unit"]) == 2 and result.context.meta["is_image"] is False
        # vectors are not clamped: the first kept point is the start itself
        first = np.asarray(result.rows["frames"])[:, :12]
        assert np.allclose(first, x[[0, 2]].numpy(), atol=1e-6)
        assert np.all(result.rows["relative_distance"] < 1)
        assert np.all(result.rows["start_distance"] > 0)
    for col in ("steps", "final_predicted", "start_distance", "final_distance"):
        assert np.allclose(rows["eager"][col], rows["script"][col], rtol=1e-5), col


def test_path_task_geodesic_method_on_vectors(tmp_path):
    """``method="geodesic"`` through the runner: a tracked path whose every step lies in D at
    the point it leaves, and the curve's vertical length before and after in the rows."""
    from leafscope.data.spec import DataSpec
    from leafscope.execution.runner import RunOptions, make_job, run
    from leafscope.foliation.geodesics import vertical_part
    from leafscope.models.spec import ModelSpec
    from leafscope.tasks.path import PathParams
    from leafscope.testing import tiny_mlp

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(10, 12, generator=gen, dtype=torch.float64) * 4
    np.savez(tmp_path / "v.npz", x_test=x.numpy(), y_test=np.arange(10) % 4)
    params = PathParams(
        start=("0",), end=("5",), method="geodesic", segments=16, penalties=(10.0, 100.0),
        iterations=10, step=0.2, dtype="float64", keep_points=1000,
    )  # fmt: skip
    spec = ModelSpec(factory="leafscope.testing:tiny_mlp", factory_kwargs='{"n_in": 12}')
    job = make_job("path", params, model=spec, data=DataSpec(name=str(tmp_path / "v.npz")))
    result = run(job, RunOptions(device="cpu", progress=False))
    rows = result.rows
    assert 0 < rows["curve_vertical_final"][0] < 1 and 0 < rows["curve_vertical_start"][0] < 1
    steps = int(rows["steps"][0])
    points = torch.as_tensor(np.asarray(rows["frames"][0]).reshape(-1, 12)[: steps + 1])
    assert torch.allclose(points[0], x[0]) and steps > 0
    model = tiny_mlp(n_in=12).double().eval()
    moves = points[1:] - points[:-1]
    with torch.no_grad():
        outside = vertical_part(model, points[:-1], moves, input_shape=(12,))
    assert float(outside.norm(dim=1).max() / moves.norm(dim=1).max()) < 1e-8
    final = float((points[-1] - x[5]).norm())
    assert rows["final_distance"][0] == pytest.approx(final, rel=1e-6)  # data: float32
    assert (
        result.payload["summary"]["median_curve_vertical_final"] == rows["curve_vertical_final"][0]
    )


def test_path_task_geodesic_method_torchscript_in_float64_gives_the_eager_rows(tmp_path):
    """A TorchScript model cast to float64 keeps parameters that require grad: the geodesic
    still runs (it ended in "Can't call numpy() on Tensor that requires grad") and gives the
    factory model's rows."""
    from leafscope.data.spec import DataSpec
    from leafscope.execution.runner import RunOptions, make_job, run
    from leafscope.models.spec import ModelSpec
    from leafscope.tasks.path import PathParams
    from leafscope.testing import tiny_mlp

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(10, 12, generator=gen) * 4
    np.savez(tmp_path / "v.npz", x_test=x.numpy(), y_test=np.arange(10) % 4)
    torch.jit.save(torch.jit.script(tiny_mlp(n_in=12)), str(tmp_path / "m.ts"))
    params = PathParams(
        start=("0",), end=("5",), method="geodesic", segments=8, penalties=(10.0, 100.0),
        iterations=4, step=0.2, dtype="float64",
    )  # fmt: skip
    data = DataSpec(name=str(tmp_path / "v.npz"), split="test")
    rows = {}
    for name, spec in (
        ("eager", ModelSpec(factory="leafscope.testing:tiny_mlp", factory_kwargs='{"n_in": 12}')),
        ("script", ModelSpec(checkpoint=str(tmp_path / "m.ts"))),
    ):
        rows[name] = run(make_job("path", params, model=spec, data=data), RunOptions(
            device="cpu", progress=False)).rows  # fmt: skip
    for col in ("steps", "final_distance", "curve_vertical_final"):
        assert np.allclose(rows["eager"][col], rows["script"][col], rtol=1e-7), col


@needs_mnist
def test_walk_command_json_and_rows(run_cli, checkpoint, tmp_path):
    out = tmp_path / "walk.json"
    rc = run_cli(
        "walk", "--checkpoint", str(checkpoint), "--pairs", "2", "--max-steps", "5",
        "--pool", "20", "--vertical-points", "4", "--vertical-steps", "10", "--json", str(out),
        "--out", str(tmp_path / "rows"), "--data-dir", str(shared_data_dir()), "--no-progress",
        "--method", "greedy,adaptive",
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    h = data["horizontal"]
    for key in ("reached_fraction", "median_final_distance", "median_relative_distance"):
        assert key in h
    assert h["method"] == "greedy" and set(data["methods"]) == {"greedy", "adaptive"}
    assert 0.0 <= h["end_class_match"] <= 1.0 and h["pairs"] == 2
    assert {"distance", "accuracy"} <= set(data["vertical"][0]) and data["random"]
    assert [v["step"] for v in data["vertical"]] == [0, 10]
    assert data["vertical"][0]["distance"] == 0 and data["vertical"][0]["prediction_kept"] == 1
    # ten kernel steps of 0.1 along one direction: about 1 from the start, never more
    assert 0.9 < data["vertical"][-1]["distance"] <= 1.0 + 1e-6
    for v, r in zip(data["vertical"], data["random"], strict=True):
        assert 0 <= v["accuracy"] <= 1 and 0 <= r["accuracy"] <= 1
        assert v["distance"] == r["distance"]  # the random lines go as far
    rows = _rows(tmp_path / "rows")
    kind = rows["kind"].astype(str)
    assert list(kind) == ["path"] * 4 + ["walk"] * 4  # (method, pair) units, then the walks
    paths = kind == "path"
    assert np.all(rows["relative_distance"][paths] <= 1 + 1e-9)
    assert np.all(np.isnan(rows["walk_distance"][paths])) and np.all(rows["pair"][~paths] == -1)
    walked = rows["walk_index"][~paths]
    assert len(set(walked.tolist())) == 4 and np.all((walked >= 0) & (walked < 20))
    # the pairs were drawn from the first 20 points, each of two different points
    pair = np.stack([rows["start_index"][paths], rows["end_index"][paths]], axis=1)
    assert np.all(pair[:, 0] != pair[:, 1]) and pair.max() < 20


def test_involutivity_command_on_noise(run_cli, checkpoint, tmp_path):
    """GeLU fields are not involutive: the brackets raise the rank above dim D = C - 1 = 9, on
    the published noise draw (of the data set's point shape: only its shape is used), and the
    Fisher test runs on the first point."""
    out = tmp_path / "inv.json"
    rc = run_cli(
        "involutivity", "--checkpoint", str(checkpoint), "--points", "2", "--inputs", "noise",
        "--dataset", "digits", "--json", str(out), "--fisher-points", "1",
        "--fisher-parameters", "fc2.weight,fc2.bias", "--no-progress",
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    summary = data["summary"]
    assert summary["mean_dim_distribution"] == 9 and summary["inputs"] == "noise"
    assert summary["mean_dim_with_brackets"] > 9  # GeLU is not involutive
    assert summary["ceiling"] == 9 + 36
    assert len(data["points"]) == 2 and [p["index"] for p in data["points"]] == [0, 1]
    assert len(data["points"][0]["singular_values"]) == 10 + 45
    assert summary["fisher"]["space"] == "parameter" and len(data["fisher_points"]) == 1
    from leafscope.foliation import involutivity
    from leafscope.training import load_checkpoint

    x = torch.rand((2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    want = involutivity(load_checkpoint(checkpoint), x, rtol=1e-10)
    assert [p["dim_with_brackets"] for p in data["points"]] == want.dim_with_brackets


def test_involutivity_command_on_data_points(run_cli, checkpoint, tmp_path):
    out = tmp_path / "inv.json"
    rc = run_cli(
        "involutivity", "--checkpoint", str(checkpoint), "--inputs", "data", "--dataset",
        "digits", "--indices", "4,2", "--json", str(out), "--no-progress",
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    from leafscope.data import load_images

    labels = load_images("digits", "test").labels
    assert [p["index"] for p in data["points"]] == [4, 2]
    assert [p["label"] for p in data["points"]] == [int(labels[4]), int(labels[2])]
    assert data["summary"]["inputs"] == "data" and data["summary"]["mean_dim_distribution"] == 9


def test_involutivity_command_rejects_bad_input(run_cli, checkpoint, tmp_path, capsys):
    common = ["--checkpoint", str(checkpoint), "--dataset", "digits"]
    common += ["--json", str(tmp_path / "x.json")]
    assert run_cli("involutivity", *common, "--inputs", "cats") == 2
    assert "--inputs must be one of noise, data" in capsys.readouterr().err
    assert run_cli("involutivity", *common, "--rtol", "2") == 2
    assert "--rtol must be in (0, 1)" in capsys.readouterr().err
    assert run_cli("involutivity", *common, "--fisher-points", "1",
                   "--fisher-parameters", "nope.weight") == 2  # fmt: skip
    assert "unknown parameter names ['nope.weight']" in capsys.readouterr().err
