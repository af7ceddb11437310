"""The ``ood``, ``ood-protocol`` and ``transfer`` tasks: through ``run(job)`` in process, through
result folders (slices + merge), the split rule, TorchScript and factory+weights models on RGB
data, and the one detector registry. No downloads: digits, noise and generated files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.applications import auroc
from leafscope.applications.detectors import BASELINES, DETECTORS, LEAF_BASED, detector_names
from leafscope.cli.main import main
from leafscope.data import load_images
from leafscope.data.spec import DataSpec
from leafscope.errors import InputError
from leafscope.execution.runner import RunOptions, make_job, merge, run
from leafscope.models import build_model
from leafscope.models.spec import ModelSpec
from leafscope.tasks.ood import OodParams, OodProtocolParams
from leafscope.tasks.transfer import TransferParams
from leafscope.training import fit, save_checkpoint

CPU = RunOptions(device="cpu", progress=False)

FACTORY = textwrap.dedent(
    """
    from torch import nn


    class Net(nn.Module):  # sub-modules in the order forward runs them (TorchScript features)
        def __init__(self, num_classes: int = 3, width: int = 6):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.act = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.flat = nn.Flatten()
            self.fc1 = nn.Linear(4 * width, 8)
            self.act1 = nn.ReLU()
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            h = self.flat(self.pool(self.act(self.conv(x))))
            return self.fc(self.act1(self.fc1(h)))


    def make(num_classes: int = 3):
        return Net(num_classes)
    """
)


@pytest.fixture(scope="module")
def lenets(tmp_path_factory):
    """Two untrained LeNet checkpoints (seeds 0 and 1)."""
    d = tmp_path_factory.mktemp("lenets")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = d / f"s{seed}.pt"
        save_checkpoint(path, model=build_model("lenet"), epoch=0, step=0, history=[])
        paths.append(str(path))
    return paths


def _ood_job(model: str, **params):
    options = {"ood": ("noise",), "detectors": ("msp", "energy", "knn"), "points": 20}
    options["fit_points"] = 40
    options.update(params)
    return make_job(
        "ood",
        OodParams(**options),
        model=ModelSpec(checkpoint=model),
        data=DataSpec(name="digits", split="test"),
    )


def test_registry_is_the_one_list():
    assert BASELINES + LEAF_BASED == tuple(DETECTORS) == detector_names()
    assert {DETECTORS[n].family for n in BASELINES} == {"baseline"}
    variant = DETECTORS["mahalanobis-lw"](torch.nn.Linear(2, 2))  # a variant is an entry
    assert variant.shrinkage == "ledoit-wolf"
    knn = DETECTORS["knn"].build(torch.nn.Linear(2, 2), {"knn_k": 7, "leaf_steps": 3})
    assert knn.k == 7  # shared settings: each entry reads its own
    leaf = DETECTORS["leaf-pixel"].build(torch.nn.Linear(2, 2), {"leaf_steps": 3})
    assert leaf.max_steps == 3
    from leafscope.applications.ood_protocol import LEAF_SCORES, PROTOCOL_BASELINES

    assert tuple(PROTOCOL_BASELINES) == BASELINES
    assert set(LEAF_SCORES) - set(DETECTORS) == {"leaf-pixel-tuned"}
    assert OodParams().detector_names == tuple(DETECTORS)  # default: every registered one
    with pytest.raises(InputError, match="detectors: unknown"):
        OodParams(detectors=("msp", "nope"))


def test_ood_in_process_rows_are_the_metrics_of_their_scores(lenets):
    result = run(_ood_job(lenets[0], checkpoints=(lenets[1],)), CPU)
    rows, summary = result.rows, result.payload["summary"]
    assert len(rows["unit"]) == 2 * 3  # two models x three detectors x one out set
    assert [u["model"] for u in result.context.units] == ["model", "checkpoint1"]
    for i in range(len(rows["unit"])):
        scores = json.loads(str(rows["scores"][i]))
        assert len(scores["in"]) == 20 and len(scores["out"]) == 20
        assert rows["auroc"][i] == pytest.approx(auroc(scores["in"], scores["out"]), abs=1e-12)
    for r in summary["results"]:  # mean and population std over the two models
        per = [p["auroc"] for p in summary["per_model"] if p["detector"] == r["detector"]]
        assert r["n_seeds"] == 2 and r["auroc"] == pytest.approx(np.mean(per))
        assert r["auroc_std"] == pytest.approx(np.std(per))
    assert any(r["auroc_std"] > 0 for r in summary["results"])  # two different models
    same = run(_ood_job(lenets[0], checkpoints=(lenets[0],)), CPU).payload["summary"]
    assert all(r["auroc_std"] == 0.0 for r in same["results"])  # the same model twice


def test_ood_slices_and_merge_give_the_rows_of_one_run(lenets, tmp_path):
    base = ["ood", "--checkpoint", lenets[0], "--checkpoints", lenets[1], "--in", "digits"]
    base += ["--ood", "noise", "--detectors", "msp,energy", "--points", "20", "--fit-points"]
    base += ["40", "--device", "cpu", "--no-progress", "--shard-size", "1"]
    one, sliced = tmp_path / "one", tmp_path / "sliced"
    assert main([*base, "--out", str(one)]) == 0
    assert main([*base, "--out", str(sliced), "--shard", "1/2"]) == 0
    assert not (sliced / "_summary.json").exists()
    assert main([*base, "--out", str(sliced), "--shard", "2/2"]) == 0
    assert main(["merge", str(sliced)]) == 0
    a, b = merge(one), merge(sliced)
    assert a["summary"] == b["summary"] and a["num_shards"] == 2


def test_ood_refuses_bad_input_in_one_line(lenets, capsys):
    base = ["ood", "--checkpoint", lenets[0], "--in", "digits", "--device", "cpu"]
    for extra, message in (
        (["--detectors", "msp,nope"], "--detectors: unknown ['nope']"),
        (["--seeds", "1"], "seeds trains its own models"),
        (["--ood", "noise,noise"], "more than once"),
        (["--points", "1"], "--points must be >= 2"),
    ):
        capsys.readouterr()
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)


def test_ood_seeds_are_trained_once_and_reused(tmp_path):
    runs = tmp_path / "runs"
    params = OodParams(
        ood=("noise",), detectors=("msp", "energy"), points=20, fit_points=40, seeds=2,
        train_epochs=1, runs_dir=str(runs),
    )  # fmt: skip
    job = make_job("ood", params, data=DataSpec(name="digits"))
    first = run(job, CPU, out=tmp_path / "o")
    assert sorted(p.name for p in runs.iterdir()) == ["lenet-s0", "lenet-s1"]
    stamp = (runs / "lenet-s0" / "epoch_0001.pt").stat().st_mtime_ns
    table = first.payload["summary"]["results"]
    assert [(r["detector"], r["n_seeds"]) for r in table] == [("msp", 2), ("energy", 2)]
    assert any(r["auroc_std"] > 0 for r in table)  # two seeds, two different models
    again = run(job, dataclasses_replace(CPU, resume=True), out=tmp_path / "o")
    assert again.skipped == [0, 1] and not again.computed  # same fingerprint: models reused
    assert (runs / "lenet-s0" / "epoch_0001.pt").stat().st_mtime_ns == stamp


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


# --- the split rule --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """RGB 16x16 data (class = brightest channel) as an .npz with splits and as a folder
    without one; a dark out set; a tiny CNN factory file, its trained weights and the same
    model scripted (torch.jit)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("rgb")

    def images(n, seed, bright=True):
        rng = np.random.default_rng(seed)
        y = np.arange(n) % 3
        x = rng.integers(0, 90, (n, 16, 16, 3)).astype(np.uint8)
        if bright:
            for i in range(n):
                x[i, :, :, y[i]] += 150
        else:
            x[:] = x[..., :1]  # grey: no channel stands out
        return x, y

    x, y = images(48, 0)
    xt, yt = images(24, 1)
    np.savez(d / "rgb.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    xd, yd = images(24, 2, bright=False)
    np.savez(d / "dark.npz", x_train=xd, y_train=yd, x_test=xd, y_test=yd)
    folder = d / "folder"
    for i, (img, label) in enumerate(zip(x[:24], y[:24], strict=True)):
        (folder / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"c{label}" / f"{i:03d}.png")
    (d / "tinyrgb.py").write_text(FACTORY)
    import importlib.util

    spec = importlib.util.spec_from_file_location("tinyrgb_for_tests", d / "tinyrgb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = module.make()
    train = load_images(str(d / "rgb.npz"), "train")
    fit(net, (train.images, train.labels), epochs=6, lr=0.05, momentum=0.9, batch_size=8,
        progress=False)  # fmt: skip
    torch.save(net.state_dict(), d / "weights.pt")
    torch.jit.save(torch.jit.script(net.eval()), d / "scripted.pt")
    return {
        "dir": d,
        "npz": str(d / "rgb.npz"),
        "dark": str(d / "dark.npz"),
        "folder": str(folder),
        "factory": ["--model", f"{d / 'tinyrgb.py'}:make", "--weights", str(d / "weights.pt")],
        "scripted": ["--checkpoint", str(d / "scripted.pt")],
    }


def test_a_set_without_split_is_refused_unless_held_out(rgb, capsys, tmp_path):
    argv = ["ood", *rgb["factory"], "--in", rgb["folder"], "--ood", rgb["dark"], "--detectors"]
    argv += ["msp", "--points", "4", "--fit-points", "8", "--device", "cpu", "--no-progress"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--holdout F" in err[0] and "--split" not in err[0]
    same = [*argv[:8], rgb["folder"], *argv[9:], "--holdout", "0.25"]  # out set = in set
    assert main(same) == 2 and "fitted on" in capsys.readouterr().err
    out = tmp_path / "o.json"
    assert main([*argv, "--holdout", "0.25", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())  # fitted on the train part, scored on the disjoint rest
    assert doc["fit_description"]["num_points"] == 18
    assert doc["in_description"]["num_points"] == 6


def test_a_held_out_set_without_split_runs(rgb, tmp_path):
    out = tmp_path / "o.json"
    argv = ["ood", *rgb["factory"], "--in", rgb["folder"], "--ood", rgb["dark"], "--detectors"]
    argv += ["msp,knn", "--points", "4", "--fit-points", "8", "--device", "cpu", "--no-progress"]
    assert main([*argv, "--holdout", "0.25", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["summary"]["results"]
    assert [r["detector"] for r in rows] == ["msp", "knn"]


# --- TorchScript and factory + weights on RGB data -------------------------------------------


KINDS = ["factory", "scripted"]  # factory + weights, and the same network as TorchScript


@pytest.mark.parametrize("kind", KINDS)
def test_ood_on_rgb_npz(rgb, kind, tmp_path):
    out = tmp_path / "o.json"
    argv = ["--in", rgb["npz"], "--ood", rgb["dark"], "--detectors", "msp,energy,knn,vim"]
    argv += ["--points", "12", "--fit-points", "24", "--device", "cpu", "--no-progress"]
    assert main(["ood", *rgb[kind], *argv, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    aurocs = {r["detector"]: r["auroc"] for r in doc["summary"]["results"]}
    assert list(aurocs) == ["msp", "energy", "knn", "vim"]
    assert aurocs["msp"] > 0.9 and aurocs["vim"] > 0.9  # grey images fire no class channel
    if kind == "scripted":  # the same weights: the same numbers as the factory model
        ref = tmp_path / "f.json"
        assert main(["ood", *rgb["factory"], *argv, "--json", str(ref)]) == 0
        expect = json.loads(ref.read_text())["summary"]["results"]
        got = doc["summary"]["results"]
        for a, b in zip(got, expect, strict=True):
            assert a["auroc"] == pytest.approx(b["auroc"], abs=1e-6)


def test_ood_noise_takes_the_shape_of_rgb_data(rgb, tmp_path):
    out = tmp_path / "o.json"
    argv = ["ood", *rgb["factory"], "--in", rgb["npz"], "--ood", "noise", "--detectors", "msp"]
    argv += ["--points", "8", "--fit-points", "12", "--device", "cpu", "--json", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert json.loads(out.read_text())["ood1_description"]["input_shape"] == [3, 16, 16]


@pytest.mark.parametrize("kind", KINDS)
def test_transfer_on_rgb_npz(rgb, kind, tmp_path):
    out = tmp_path / "t.json"
    rest = ["--dataset", rgb["npz"], "--datasets", f"{rgb['npz']},{rgb['dark']}", "--points"]
    rest += ["9", "--transfer-train", "48", "--transfer-val", "24", "--device", "cpu"]
    rest += ["--no-progress", "--json"]
    assert main(["transfer", *rgb[kind], *rest, str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    rows = {r["dataset"]: r for r in summary["rows"]}
    if kind == "scripted":  # the same weights: the same table as the factory model
        ref = tmp_path / "f.json"
        assert main(["transfer", *rgb["factory"], *rest, str(ref)]) == 0
        expect = json.loads(ref.read_text())["summary"]["rows"]
        for a, b in zip(summary["rows"], expect, strict=True):
            assert a["transfer_accuracy"] == pytest.approx(b["transfer_accuracy"], abs=1e-6)
            assert a["median_log10_trace"] == pytest.approx(b["median_log10_trace"], abs=1e-6)
    assert rows[rgb["npz"]]["transfer_accuracy"] > 0.6  # three classes: chance is 1/3
    assert rows[rgb["npz"]]["points"] == 9 and rows[rgb["npz"]]["transfer_train_points"] == 48
    # the model's own set is closer to its held-out test points than the grey set
    assert rows[rgb["npz"]]["training_distance"] < rows[rgb["dark"]]["training_distance"]
    d = summary["distances"]
    assert d[rgb["npz"]][rgb["npz"]] == 0.0
    assert d[rgb["npz"]][rgb["dark"]] == pytest.approx(d[rgb["dark"]][rgb["npz"]])


# --- transfer --------------------------------------------------------------------------------


def test_transfer_in_process_units_and_distances(lenets):
    params = TransferParams(datasets=("digits", "noise"), points=6, transfer_train=60,
                            transfer_val=30)  # fmt: skip
    job = make_job("transfer", params, model=ModelSpec(checkpoint=lenets[0]),
                   data=DataSpec(name="digits"))  # fmt: skip
    result = run(job, CPU)
    units = result.context.units
    assert [u["kind"] for u in units] == ["set", "set", "reference"]
    rows = result.payload["summary"]["rows"]
    assert [r["dataset"] for r in rows] == ["digits", "noise"]
    assert rows[1]["transfer_accuracy"] is None  # noise: unlabelled
    assert 0 <= rows[0]["transfer_accuracy"] <= 1 and rows[0]["transfer_train_points"] == 60
    from leafscope.applications.transfer import spectral_distance

    logs = {str(d): np.asarray(json.loads(str(e))) for d, e, k in zip(
        result.rows["dataset"], result.rows["log10_eigenvalues"], result.rows["kind"],
        strict=True) if str(k) == "set"}  # fmt: skip
    ref = np.asarray(json.loads(str(result.rows["log10_eigenvalues"][-1])))
    assert logs["digits"].shape == (6, 9)
    assert rows[0]["training_distance"] == pytest.approx(spectral_distance(logs["digits"], ref))
    assert result.payload["summary"]["distances"]["digits"]["noise"] == pytest.approx(
        spectral_distance(logs["digits"], logs["noise"])
    )
    with pytest.raises(InputError, match="more than once"):
        TransferParams(datasets=("digits", "digits"))


# --- ood-protocol ----------------------------------------------------------------------------


def test_ood_protocol_task_trains_scores_and_resumes(tmp_path):
    from leafscope.applications.ood_protocol import LEAF_SCORES, PROTOCOL_BASELINES, WEIGHT_GRID

    params = OodProtocolParams(
        seeds=2, regimes=("partial",), max_steps_per_epoch=2, runs_dir=str(tmp_path / "runs"),
        ood=("noise", "rotated-90"), points=12, fit_points=40, leaf_steps=1, leaf_scale_points=4,
    )  # fmt: skip
    job = make_job("ood-protocol", params, data=DataSpec(name="digits"))
    out = tmp_path / "p"
    first = run(job, CPU, out=out)
    summary = first.payload["summary"]
    names = list(PROTOCOL_BASELINES) + list(LEAF_SCORES)
    table = summary["table"]
    assert [r["detector"] for r in table if r["out_dataset"] == "noise"] == names
    assert {r["out_dataset"] for r in table} == {"noise", "rotated-90"}
    for row in table:  # the table is the seeds' mean and population std
        per = [
            r["auroc"]
            for r in summary["per_model"]
            if (r["detector"], r["out_dataset"]) == (row["detector"], row["out_dataset"])
        ]
        assert row["auroc"] == pytest.approx(np.mean(per)) and row["n_seeds"] == 2
        assert row["auroc_std"] == pytest.approx(np.std(per))
    models = summary["models"]
    assert [(m["setting"], m["seed"]) for m in models] == [("partial", 0), ("partial", 1)]
    assert all(t["weight"] in WEIGHT_GRID for t in summary["tuned_weights"])
    assert summary["models"][0]["steps"] == 2 and 0 <= summary["models"][0]["test_accuracy"] <= 1
    again = run(job, dataclasses_replace(CPU, resume=True), out=out)
    assert again.skipped == [0, 1] and not again.computed  # trained models reused, shards kept
    with pytest.raises(InputError, match="regimes: unknown"):
        OodProtocolParams(regimes=("forever",))
    with pytest.raises(InputError, match="rotated-DEGREES"):
        OodProtocolParams(ood=("rotated-x",))


def test_readme_names_the_commands():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "`leafscope ood --checkpoints A,B,C --in mnist --ood fashion-mnist,noise" in text
    assert "leafscope ood-protocol" in text


def test_ood_and_transfer_folders_get_their_figures_from_the_saved_scores(rgb, tmp_path):
    """``--out``: the saved raw scores give back each detector's AUROC, the saved spectra the
    medians of the summary; one ROC figure per out set, one spectra figure."""
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "ood"
    argv = ["ood", *rgb["factory"], "--in", rgb["npz"], "--ood", f"{rgb['dark']},noise"]
    argv += ["--detectors", "msp,knn", "--points", "12", "--fit-points", "24", "--device"]
    argv += ["cpu", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    curves = json.loads((out / "_files" / "ood_scores.json").read_text())["curves"]
    assert len(curves) == 4  # 2 detectors x 2 out sets, first model
    for c in curves:
        labels = [1] * len(c["in_scores"]) + [0] * len(c["out_scores"])
        auroc = roc_auc_score(labels, c["in_scores"] + c["out_scores"])
        assert auroc == pytest.approx(c["auroc"], abs=1e-12)
    pngs = sorted(p.name for p in (out / "_files").glob("roc_*.png"))
    assert pngs == [f"roc_{Path(rgb['dark']).stem}_npz.png", "roc_noise.png"]

    out = tmp_path / "transfer"
    rest = ["--dataset", rgb["npz"], "--datasets", f"{rgb['npz']},{rgb['dark']}", "--points"]
    rest += ["9", "--transfer-train", "48", "--transfer-val", "24", "--device", "cpu"]
    assert main(["transfer", *rgb["factory"], *rest, "--no-progress", "--out", str(out)]) == 0
    spectra = json.loads((out / "_files" / "spectra.json").read_text())["log10_eigenvalues"]
    summary = json.loads((out / "_summary.json").read_text())["summary"]
    for row in summary["rows"]:
        logs = np.asarray(spectra[row["dataset"]])
        assert np.median(logs[:, 0]) == pytest.approx(row["median_log10_highest"], rel=1e-9)
    assert (out / "_files" / "spectra.png").stat().st_size > 0
