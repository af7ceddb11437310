"""``leafscope stability`` and ``leafscope invariance`` (units: a pair of models and a layer;
a model and a layer) on tiny LeNet runs (512 MNIST images), and on a user model by its own
layer names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leafscope.cli.main import main
from leafscope.report.results import write_result_figures
from leafscope.testing import shared_data_dir

DATA = shared_data_dir()
needs_mnist = pytest.mark.skipif(DATA is None, reason="shared MNIST not present")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from leafscope.data import load_images
    from leafscope.models import build_model
    from leafscope.training import fit

    if DATA is None:
        pytest.skip("shared MNIST not present")
    root = tmp_path_factory.mktemp("runs")
    data = load_images("mnist", "train", data_dir=DATA, limit=512, download=False)
    out = {}
    for name, seed, rotation in (("a", 0, 0.0), ("b", 1, 0.0), ("rot", 0, 40.0)):
        torch.manual_seed(seed)
        fit(build_model("lenet"), data, epochs=1, lr=0.05, momentum=0.9, seed=seed,
            out_dir=root / name, progress=False, augment_rotation=rotation)  # fmt: skip
        out[name] = root / name
    return out


def _run(*argv) -> int:
    return main([*map(str, argv), "--device", "cpu", "--no-progress"])


def _mnist(*argv) -> int:
    return _run(*argv, "--data-dir", DATA)


@needs_mnist
def test_stability_of_a_run_with_itself_and_across_seeds(runs, tmp_path, capsys):
    doc, out = tmp_path / "s.json", tmp_path / "res"
    code = _mnist("stability", "--runs", f"{runs['a']},{runs['a']},{runs['b']}",
                  "--layers", "conv1,fc2", "--points", 150, "--k", 10, "--out", out,
                  "--json", doc)  # fmt: skip
    assert code == 0
    data = json.loads(doc.read_text())
    a = str(runs["a"])
    assert data["models"] == [a, f"{a}#2", str(runs["b"])]
    for layer in ("conv1", "fc2"):
        pairs = data["layers"][layer]
        assert pairs["pairs"] == [[0, 1], [0, 2], [1, 2]]
        same, other, other2 = pairs["nnk_overlap"]
        assert same["jaccard"] == 1.0 and same["edges_a"] == same["common"] > 0
        assert pairs["knn_overlap"][0]["jaccard"] == 1.0
        assert all(d["wasserstein"] == 0.0 for d in pairs["mgm_distances"][0].values())
        assert other == other2  # a and its copy meet b alike
        assert other["chance"] < other["jaccard"] < 1.0
        for overlap in (*pairs["nnk_overlap"], *pairs["knn_overlap"]):
            assert 0 <= overlap["jaccard"] <= 1 and 0 <= overlap["chance"] <= 1
        assert len(pairs["mgm_means"]) == 3 and pairs["mgm_means"][0] == pairs["mgm_means"][1]
    assert json.loads((out / "_files" / "stability.json").read_text())["layers"] == data["layers"]
    (png,) = write_result_figures(out)
    assert png == out / "_files" / "stability.png" and png.stat().st_size > 0
    summary = json.loads((out / "_summary.json").read_text())["summary"]
    assert 0 < summary["layers"]["fc2"]["nnk_jaccard"] < 1
    assert "NNK edge Jaccard" in capsys.readouterr().out


@needs_mnist
def test_stability_of_the_main_model_against_a_run(runs, tmp_path):
    doc = tmp_path / "s.json"
    assert _mnist("stability", "--checkpoint", runs["a"], "--runs", f"seed1={runs['b']}",
                  "--layers", "fc1", "--points", 60, "--k", 6, "--json", doc) == 0  # fmt: skip
    data = json.loads(doc.read_text())
    assert data["models"] == ["model", "seed1"]
    (overlap,) = data["layers"]["fc1"]["nnk_overlap"]
    assert 0 <= overlap["jaccard"] < 1


@needs_mnist
def test_invariance_compares_models(runs, tmp_path, capsys):
    doc, out = tmp_path / "i.json", tmp_path / "res"
    code = _mnist("invariance", "--models", f"plain={runs['a']},rotated={runs['rot']}",
                  "--layers", "conv1,fc2", "--points", 40, "--angles=-30,30,60",
                  "--out", out, "--json", doc)  # fmt: skip
    assert code == 0
    data = json.loads(doc.read_text())
    for label in ("plain", "rotated"):
        res = data["results"][label]
        assert list(res) == ["input", "conv1", "fc2"]  # one entry per layer
        for layer in res.values():
            diameter = np.asarray(layer["diameter"])
            assert diameter.shape == (40,) and np.isfinite(diameter).all()
            assert (diameter >= 0).all() and (diameter <= 2 + 1e-6).all()
            assert 0 <= layer["diameter_mean"] <= layer["spread_mean"] + 1e-6 <= 2 + 1e-6
            assert layer["diameter_mean"] == pytest.approx(diameter.mean())
            assert 1 <= layer["n_selected_mean"] <= 3  # of 3 rotations
        assert list(data["accuracy"][label]) == ["0.0", "-30.0", "30.0", "60.0"]
        assert all(0 <= a <= 1 for a in data["accuracy"][label].values())
    # the inputs do not depend on the model
    assert data["results"]["plain"]["input"] == data["results"]["rotated"]["input"]
    assert (
        json.loads((out / "_files" / "invariance.json").read_text())["results"] == data["results"]
    )
    (png,) = write_result_figures(out)
    assert png == out / "_files" / "invariance.png" and png.stat().st_size > 0
    assert "mean NNK polytope diameter" in capsys.readouterr().out


def test_user_model_by_its_layer_names(user_model, rgb_data, tmp_path):
    """A factory with weights, compared with a TorchScript copy of itself (stability: the same
    graphs) and measured for rotation invariance, its layers named as the user named them."""
    name, _, net, weights, _ = user_model
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    torch.save({k: v + 0.05 * torch.randn_like(v) for k, v in net.state_dict().items()}, other)
    model = ["--model", f"{name}:make", "--weights", weights, "--dataset", rgb_data]
    doc = tmp_path / "s.json"
    assert _run("stability", *model, "--runs", f"same={weights},other={other}", "--layers",
                "conv2,fc1", "--points", 30, "--k", 5, "--json", doc) == 0  # fmt: skip
    data = json.loads(doc.read_text())
    assert data["models"] == ["model", "same", "other"]
    for layer in ("conv2", "fc1"):
        same, other_pair, _ = data["layers"][layer]["nnk_overlap"]
        assert same["jaccard"] == 1.0 and 0 <= other_pair["jaccard"] <= 1
    doc = tmp_path / "i.json"
    assert _run("invariance", *model, "--layers", "conv1,fc1", "--points", 6, "--angles",
                "90,180", "--json", doc) == 0  # fmt: skip
    res = json.loads(doc.read_text())["results"]["model"]
    assert list(res) == ["input", "conv1", "fc1"]
    assert all(np.isfinite(g["diameter"]).all() and min(g["diameter"]) >= 0 for g in res.values())


def test_a_torchscript_model_against_its_factory(user_model, rgb_data, tmp_path):
    """The same weights as a factory and as TorchScript: identical NNK graphs per layer."""
    name, _, _, weights, scripted = user_model
    doc = tmp_path / "s.json"
    assert _run("stability", "--model", f"{name}:make", "--weights", weights, "--runs",
                f"ts={scripted}", "--dataset", rgb_data, "--layers", "conv1,fc1",
                "--points", 30, "--k", 5, "--json", doc) == 0  # fmt: skip
    data = json.loads(doc.read_text())
    assert all(data["layers"][n]["nnk_overlap"][0]["jaccard"] == 1.0 for n in ("conv1", "fc1"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stability", "--runs", "RUN_A", "--layers", "conv1"], "at least 2"),
        (["stability", "--runs", "RUN_A,RUN_B", "--layers", "conv9"], "conv9"),
        (["stability", "--runs", "RUN_A,RUN_B", "--layers", "conv1", "--points", "2"], ">= 3"),
        (["stability", "--runs", "RUN_A,RUN_B"], "--layers must name at least one layer"),
        (["invariance", "--models", "a=RUN_A", "--layers", "conv1", "--angles", "x"], "number"),
        (["invariance", "--models", "a=RUN_A", "--layers", "conv1", "--angles", "0,90"], "360"),
        (["invariance", "--models", "a=/no/such", "--layers", "conv1"], "no checkpoint"),
        (["invariance", "--layers", "conv1"], "needs a model"),
    ],
)
def test_bad_arguments_give_one_line(runs, capsys, argv, message):
    argv = [a.replace("RUN_A", str(runs["a"])).replace("RUN_B", str(runs["b"])) for a in argv]
    assert _mnist(*argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@needs_mnist
def test_both_tasks_through_the_runner_in_process(runs):
    from leafscope.data.spec import DataSpec
    from leafscope.execution.runner import RunOptions, make_job, run
    from leafscope.models.spec import ModelSpec
    from leafscope.tasks.invariance import InvarianceParams
    from leafscope.tasks.stability import StabilityParams

    data = DataSpec(name="mnist", data_dir=str(DATA))
    options = RunOptions(device="cpu", progress=False)
    main_model = ModelSpec(checkpoint=str(runs["a"]))
    params = StabilityParams(layers=("conv1", "fc1"), runs=(f"self={runs['a']}", str(runs["b"])),
                             points=40, k=5)  # fmt: skip
    rows = run(make_job("stability", params, model=main_model, data=data), options).rows
    assert list(rows["layer"]) == ["conv1"] * 3 + ["fc1"] * 3
    assert list(rows["a"]) == ["model", "model", "self"] * 2
    assert list(rows["b"]) == ["self", str(runs["b"]), str(runs["b"])] * 2
    assert rows["nnk_jaccard"][0] == rows["nnk_jaccard"][3] == 1.0
    assert np.all((rows["nnk_jaccard"] >= 0) & (rows["nnk_jaccard"] <= 1))
    assert rows["n_neighbors_wasserstein"][0] == 0.0
    np.testing.assert_array_equal(rows["nnk_common"][[0, 3]], rows["nnk_edges_a"][[0, 3]])
    params = InvarianceParams(layers=("fc1",), angles=(90.0, 180.0), points=5)
    rows = run(make_job("invariance", params, model=main_model, data=data), options).rows
    assert list(rows["kind"]) == ["geometry", "accuracy", "geometry"]
    assert list(rows["layer"]) == ["input", "", "fc1"]
    assert rows["diameter"].shape == (3, 5) and np.isnan(rows["diameter"][1]).all()
    assert np.isfinite(rows["diameter"][[0, 2]]).all() and (rows["diameter"][[0, 2]] >= 0).all()
    assert rows["accuracy"].shape == (3, 3) and np.isfinite(rows["accuracy"][1]).all()
