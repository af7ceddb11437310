"""``leafscope stability`` and ``leafscope invariance`` on tiny LeNet runs (512 MNIST images)."""

from __future__ import annotations

import json

import pytest
import torch

from leafscope.cli.main import main
from leafscope.testing import shared_data_dir

DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="shared MNIST not present")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from leafscope.data import load_images
    from leafscope.models import build_model
    from leafscope.training import fit

    root = tmp_path_factory.mktemp("runs")
    data = load_images("mnist", "train", data_dir=DATA, limit=512, download=False)
    out = {}
    for name, seed, rotation in (("a", 0, 0.0), ("b", 1, 0.0), ("rot", 0, 40.0)):
        torch.manual_seed(seed)
        fit(build_model("lenet"), data, epochs=1, lr=0.05, momentum=0.9, seed=seed,
            out_dir=root / name, progress=False, augment_rotation=rotation)  # fmt: skip
        out[name] = root / name
    return out


def _run(*argv: str) -> int:
    return main([*argv, "--device", "cpu", "--data-dir", str(DATA)])


def test_stability_of_a_run_with_itself_and_across_seeds(runs, tmp_path, capsys):
    out = tmp_path / "s.json"
    code = _run("stability", "--runs", f"{runs['a']},{runs['a']},{runs['b']}",
                "--layers", "conv1,fc2", "--points", "150", "--k", "10", "--json", str(out),
                "--figure", str(tmp_path / "s.png"))  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text())
    for layer in ("conv1", "fc2"):
        pairs = data["layers"][layer]
        assert pairs["pairs"] == [[0, 1], [0, 2], [1, 2]]
        same, other = pairs["nnk_overlap"][0], pairs["nnk_overlap"][1]
        assert same["jaccard"] == 1.0
        assert other["chance"] < other["jaccard"] < 1.0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert "NNK edge Jaccard" in capsys.readouterr().out


def test_invariance_compares_models(runs, tmp_path, capsys):
    out = tmp_path / "i.json"
    code = _run("invariance", "--models", f"plain={runs['a']},rotated={runs['rot']}",
                "--layers", "conv1,fc2", "--points", "40", "--angles=-30,30,60",
                "--json", str(out), "--figure", str(tmp_path / "i.png"))  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text())
    for label in ("plain", "rotated"):
        res = data["results"][label]
        assert list(res) == ["input", "conv1", "fc2"]
        for layer in res.values():
            assert 0 <= layer["diameter_mean"] <= layer["spread_mean"] + 1e-6 <= 2
    for label in ("plain", "rotated"):
        assert list(data["accuracy"][label]) == ["0.0", "-30.0", "30.0", "60.0"]
        assert all(0 <= a <= 1 for a in data["accuracy"][label].values())
    # the inputs do not depend on the model
    assert data["results"]["plain"]["input"] == data["results"]["rotated"]["input"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stability", "--runs", "RUN_A", "--layers", "conv1"], "at least 2 runs"),
        (["stability", "--runs", "RUN_A,RUN_B", "--layers", "conv9"], "valid names are"),
        (["stability", "--runs", "RUN_A,RUN_B", "--layers", "conv1", "--points", "2"], ">= 3"),
        (["invariance", "--models", "RUN_A", "--layers", "conv1"], "LABEL=PATH"),
        (["invariance", "--models", "a=RUN_A", "--layers", "conv1", "--angles", "x"], "numbers"),
        (["invariance", "--models", "a=RUN_A", "--layers", "conv1", "--angles", "0,90"], "360"),
        (["invariance", "--models", "a=/no/such", "--layers", "conv1"], "neither"),
    ],
)
def test_bad_arguments_give_one_line(runs, capsys, argv, message):
    argv = [a.replace("RUN_A", str(runs["a"])).replace("RUN_B", str(runs["b"])) for a in argv]
    assert _run(*argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
