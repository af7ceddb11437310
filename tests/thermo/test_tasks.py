"""The thermo-lenet, thermo-filters and thermo-gnn tasks: in process, through the CLI with
slices and merge, against the experiment drivers, and their refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from leafscope.cli.main import main
from leafscope.data.spec import DataSpec
from leafscope.execution.runner import RunOptions, make_job, run
from leafscope.tasks.thermo import (
    ThermoFiltersParams,
    ThermoGnnParams,
    ThermoLenetParams,
    reinitialise,
    uncovered_parameters,
)
from leafscope.testing import shared_data_dir

CPU = RunOptions(device="cpu", progress=False)


def _bars(n: int, side: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is the row of a bright bar (learnt in a few steps)."""
    gen = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = gen.random((n, 1, side, side), dtype=np.float32) * 0.2
    step = side // classes
    for c in range(classes):
        x[y == c, 0, c * step : c * step + 2, :] += 0.8
    return x, y


@pytest.fixture(scope="module")
def bars28(tmp_path_factory):
    path = tmp_path_factory.mktemp("bars") / "bars28.npz"
    (xa, ya), (xb, yb) = _bars(240, 28, 4, 0), _bars(100, 28, 4, 1)
    np.savez(path, x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    return path


@pytest.fixture(scope="module")
def bars8(tmp_path_factory):
    path = tmp_path_factory.mktemp("bars") / "bars8.npz"
    (xa, ya), (xb, yb) = _bars(150, 8, 3, 0), _bars(60, 8, 3, 1)
    np.savez(path, x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    return path


def _assert_table(summary: dict, rows: dict, conditions: list[str]) -> None:
    """Accuracies are fractions; each row's mean ± std is that of the per-seed values."""
    acc = np.asarray(rows["accuracy"])
    assert acc.shape == (len(rows["unit"]), len(conditions))
    assert np.all((acc >= 0) & (acc <= 1))
    assert np.array_equal(acc[:, 0], rows["test_accuracy"])  # "original" comes first
    assert [r["condition"] for r in summary["rows"]] == conditions
    for j, row in enumerate(summary["rows"]):
        assert row["accuracies"] == pytest.approx(acc[:, j].tolist(), abs=0)
        assert row["accuracy_mean"] == pytest.approx(acc[:, j].mean(), abs=1e-12)
        assert row["accuracy_std"] == pytest.approx(acc[:, j].std(ddof=1), abs=1e-12)
        assert row["loss_mean"] == pytest.approx(np.mean(rows["loss"][:, j]), abs=1e-12)


def _assert_temperatures(rows: dict, filters: int) -> None:
    temps = np.asarray(rows["temperature"])
    assert temps.shape == (len(rows["unit"]), filters)
    assert np.all(np.isfinite(temps)) and np.all(temps >= 0) and np.all(temps.max(axis=1) > 0)


def test_reinitialise_gives_the_weights_of_a_fresh_build():
    from leafscope.models import build_model

    torch.manual_seed(3)
    built = build_model("lenet", activation="relu", num_classes=10)
    other = build_model("lenet", activation="relu", num_classes=10)  # other weights
    torch.manual_seed(3)
    reinitialise(other)
    for (name, a), b in zip(built.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    custom = nn.Sequential(nn.Conv2d(1, 2, 3))
    custom.register_parameter("scale", nn.Parameter(torch.ones(1)))
    assert uncovered_parameters(custom) == ["scale"]


def test_thermo_lenet_task_equals_the_experiment_driver(bars28):
    from leafscope.experiments.thermo import run_lenet_experiment
    from leafscope.thermo.lenet import CONDITIONS

    params = ThermoLenetParams(seeds=2, epochs=3, lr=0.1, momentum=0.9, taylor_batches=1)
    job = make_job("thermo-lenet", params, data=DataSpec(name=str(bars28), split="train"))
    assert job.models["model"].factory == "leafscope.models:build_model"  # LeNet-5 by default
    result = run(job, CPU)
    rows, summary = result.rows, result.payload["summary"]
    _assert_temperatures(rows, 6)
    _assert_table(summary, rows, CONDITIONS)
    assert np.all(rows["test_accuracy"] > 0.5)  # the bars are learnt (chance: 0.25)
    drop = np.asarray(rows["single_filter_accuracy_drop"])
    assert drop.shape == (2, 6) and np.all(np.abs(drop) <= 1)
    assert all(0 <= r["accuracy_mean"] <= 1 for r in summary["published"])
    # the same seeds through the experiment driver (a fresh LeNet-5 built under each seed, in
    # percent) on the same split: the same numbers
    with np.load(bars28) as f:
        x, y = torch.from_numpy(f["x_train"]), torch.from_numpy(f["y_train"]).long()
        test = (torch.from_numpy(f["x_test"]), torch.from_numpy(f["y_test"]).long())
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    val, train = (x[perm[:24]], y[perm[:24]]), (x[perm[24:]], y[perm[24:]])
    old = run_lenet_experiment(2, epochs=3, lr=0.1, momentum=0.9, taylor_batches=1,
                               data=(train, val, test))  # fmt: skip
    for row in old.rows:
        j = CONDITIONS.index(row.condition)
        assert np.allclose(row.accuracies, 100 * rows["accuracy"][:, j], rtol=0, atol=1e-9)
        assert row.losses == rows["loss"][:, j].tolist()
    main_key = old.per_seed[0]["main_temperature"]
    assert np.allclose([s["temperatures"][main_key] for s in old.per_seed], rows["temperature"])


def test_thermo_filters_slices_merge_to_the_rows_of_one_run(bars8, tmp_path, capsys):
    """A user CNN, its convolution by the user's own name, seeds cut into two slices."""
    common = [
        "thermo-filters", "--model", "leafscope.testing:tiny_cnn", "--model-args",
        '{"n_classes": 3}', "--layer", "0", "--dataset", str(bars8), "--seeds", "2",
        "--epochs", "3", "--lr", "0.1", "--momentum", "0.9", "--batch-size", "16",
        "--shard-size", "1", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    one, sliced = tmp_path / "one", tmp_path / "sliced"
    assert main([*common, "--out", str(one), "--json", str(tmp_path / "one.json")]) == 0
    assert "without_1_hottest" in capsys.readouterr().out  # k: a third of 4 filters
    assert main([*common, "--out", str(sliced), "--shard", "1/2"]) == 0
    assert not (sliced / "_summary.json").exists()
    assert main([*common, "--out", str(sliced), "--shard", "2/2"]) == 0
    assert main(["merge", str(sliced)]) == 0
    from leafscope.execution.results import ResultFolder

    a, b = ResultFolder(one).read_columns(2), ResultFolder(sliced).read_columns(2)
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    merged = json.loads((sliced / "_summary.json").read_text())["summary"]
    assert merged == json.loads((one / "_summary.json").read_text())["summary"]
    _assert_temperatures(a, 4)
    conditions = ["original", "without_1_hottest", "without_1_coldest", "without_1_random"]
    _assert_table(merged, a, conditions)
    assert merged["layer"] == "0" and merged["k"] == 1 and merged["filters"] == 4
    document = json.loads((tmp_path / "one.json").read_text())
    assert [s["seed"] for s in document["per_seed"]] == [0, 1]
    assert document["per_seed"][0]["temperatures"] == a["temperature"][0].tolist()
    assert len(set(map(tuple, a["temperature"].tolist()))) == 2  # two seeds, two trainings


def test_thermo_filters_from_loaded_weights(bars8, tmp_path):
    """init weights: every seed starts from the given state_dict (the seeds differ only in
    their batch order and random control)."""
    from leafscope.models.spec import ModelSpec
    from leafscope.testing import tiny_cnn

    torch.save(tiny_cnn(n_classes=3, seed=5).state_dict(), tmp_path / "w.pt")
    spec = ModelSpec(factory="leafscope.testing:tiny_cnn", factory_kwargs='{"n_classes": 3}',
                     weights=str(tmp_path / "w.pt"))  # fmt: skip
    data = DataSpec(name=str(bars8), split="train")
    params = ThermoFiltersParams(seeds=1, epochs=1, layer="0", init="weights", k=2)
    result = run(make_job("thermo-filters", params, model=spec, data=data), CPU)
    _assert_temperatures(result.rows, 4)
    assert result.payload["summary"]["init"] == "weights"


def test_thermo_filters_refusals_are_one_line(bars8, tmp_path, capsys):
    from leafscope.testing import tiny_cnn

    torch.jit.save(torch.jit.script(tiny_cnn(n_classes=3)), str(tmp_path / "m.ts"))
    base = ["thermo-filters", "--dataset", str(bars8), "--seeds", "1", "--epochs", "1",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    user = ["--model", "leafscope.testing:tiny_cnn", "--model-args", '{"n_classes": 3}']
    cases = [
        (["--checkpoint", str(tmp_path / "m.ts"), "--layer", "0"], "TorchScript"),
        ([*user, "--layer", "conv9"], "is not a layer of the model"),
        ([*user, "--layer", "4"], "not a convolution kernel"),
        ([*user, "--layer", "0", "--split", "test"], "leave split at train"),
        ([*user, "--layer", "0", "--k", "4"], "k must be an integer in 1..3"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main([*base, *user, "--layer", "conv9"]) == 2
    assert "'0'" in capsys.readouterr().err  # the valid names are the user's own


def test_thermo_gnn_task_on_cora():
    data_dir = shared_data_dir()
    if data_dir is None or not (data_dir / "planetoid").is_dir():
        pytest.skip("shared Planetoid files not present")
    params = ThermoGnnParams(seeds=1, epochs=5, ratios=(0.0, 50.0, 100.0),
                             data_dir=str(data_dir / "planetoid"))  # fmt: skip
    result = run(make_job("thermo-gnn", params), CPU)
    rows, summary = result.rows, result.payload["summary"]
    temps = np.asarray(rows["temperature"])
    assert temps.shape == (1, 1433) and np.all(np.isfinite(temps)) and np.all(temps >= 0)
    curves = {(c["criterion"], c["ratio"]): c["metric_mean"] for c in summary["curves"]}
    before = float(rows["metric_before_pruning"][0])
    assert 0 < before <= 1 and all(0 <= v <= 1 for v in curves.values())
    for criterion in summary["criteria"]:
        assert curves[(criterion, 0.0)] == before  # nothing pruned: the trained model
    assert len({curves[(c, 100.0)] for c in summary["criteria"]}) == 1  # every feature gone
    assert summary["metric"] == "accuracy" and summary["epochs"] == 5


def test_thermo_parameters_are_checked_by_field():
    from leafscope.errors import InputError

    with pytest.raises(InputError, match="^seeds must be >= 1"):
        ThermoLenetParams(seeds=0)
    with pytest.raises(InputError, match="^ratios: pruning ratios must be percentages"):
        ThermoGnnParams(ratios=(120.0,))
    with pytest.raises(InputError, match="^velocity must be step or epoch"):
        ThermoLenetParams(velocity="fast")
