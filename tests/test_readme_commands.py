"""Every command in the README's table runs on tiny real data and gives a sensible result.

The command lines are read from README.md itself; placeholders (CKPT, RUN, OUT, DIR, ...) become
tiny runs trained here, and size options are appended (argparse keeps the last value), so the
README can never again show a line that fails or gives a useless number.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from leafscope.cli.main import build_parser, main
from leafscope.testing import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shared_data_dir() is None, reason="shared MNIST files absent")


def readme_commands() -> list[list[str]]:
    """argv of every `leafscope ...` command in the README's command table."""
    commands = []
    for line in (ROOT / "README.md").read_text().splitlines():
        if not line.startswith("| `leafscope "):
            continue
        cell = line.split(" | ")[0]
        for code in re.findall(r"`([^`]+)`", cell):
            words = shlex.split(re.sub(r"\[([^\]]*)\]", r"\1", code))
            if words[0] == "leafscope":
                words = words[1:]
            if words[0] == "thermo" or words[0] in _SUBCOMMANDS:
                commands.append(words)
    return commands


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _check_train(out: Path, argv: list[str]) -> None:
    record = _json(out / "metrics.json")["history"][-1]
    assert record["val_accuracy"] > 0.2  # twice chance after 112 steps of the defaults (0.31)


def _check_spectrum(out: Path, argv: list[str]) -> None:
    points = _json(out)["points"]
    assert len(points) == 8
    for p in points:
        eig = 10 ** np.asarray(p["log10_eigenvalues"])
        assert len(eig) <= 9 and np.all(np.diff(eig) <= 1e-12 * eig[0])
        assert np.isclose(eig.sum(), 10 ** p["log10_trace"], rtol=1e-4)


def _check_path(out: Path, argv: list[str]) -> None:
    assert "distance" in json.dumps(_json(next(out.glob("*.json"))))


def _check_walk(out: Path, argv: list[str]) -> None:
    data = _json(out)
    assert data["horizontal"] and data["vertical"]


def _check_involutivity(out: Path, argv: list[str]) -> None:
    data = _json(out)
    summary, points = data["summary"], data["points"]
    assert len(points) == 2 and summary["inputs"] == "noise" and summary["ceiling"] == 9 + 36
    for p in points:  # LeNet is a ReLU network: involutive, the brackets add no direction
        assert 1 <= p["dim_distribution"] == p["dim_with_brackets"] <= 9


def _check_transfer(out: Path, argv: list[str]) -> None:
    summary = _json(out)["summary"]
    rows = {r["dataset"]: r for r in summary["rows"]}
    assert list(rows) == _option(argv, "--datasets").split(",")
    points, train = int(_option(argv, "--points")), int(_option(argv, "--transfer-train"))
    for name, r in rows.items():
        assert r["points"] == points
        labelled = name != "noise"
        assert (r["transfer_accuracy"] is not None) == labelled, name
        assert r["transfer_train_points"] == (train if labelled else 0)
        assert summary["distances"][name][name] == 0.0
    assert rows["mnist"]["transfer_accuracy"] > 0.5
    assert 0 <= rows["fashion-mnist"]["transfer_accuracy"] <= 1
    # the model's own set lies closer to its held-out test points than noise does
    assert rows["mnist"]["training_distance"] < rows["noise"]["training_distance"]


def _check_ood(out: Path, argv: list[str]) -> None:
    summary = _json(out)["summary"]
    detectors, outs = _option(argv, "--detectors").split(","), _option(argv, "--ood").split(",")
    models = len(_option(argv, "--checkpoints").split(","))
    rows = summary["results"]
    assert [(r["detector"], r["out_dataset"]) for r in rows] == [
        (d, o) for d in detectors for o in outs
    ]
    for r in rows:  # mean and population std over the models
        key = (r["detector"], r["out_dataset"])
        per = [p["auroc"] for p in summary["per_model"] if (p["detector"], p["out_dataset"]) == key]
        assert r["n_seeds"] == len(per) == models and 0 <= r["auroc"] <= 1
        assert r["auroc"] == pytest.approx(np.mean(per)) and r["auroc_std"] >= 0
    noise = [r["auroc"] for r in rows if r["out_dataset"] == "noise" and r["detector"] == "energy"]
    assert noise and min(noise) > 0.5


def _check_ood_protocol(out: Path, argv: list[str]) -> None:
    from leafscope.applications.ood_protocol import LEAF_SCORES, PROTOCOL_BASELINES

    summary = _json(out)["summary"]
    table, outs = summary["table"], _option(argv, "--ood").split(",")
    names = [*PROTOCOL_BASELINES, *LEAF_SCORES]
    assert [(r["setting"], r["detector"], r["out_dataset"]) for r in table] == [
        ("partial", d, o) for d in names for o in outs
    ]
    assert all(0 <= r["auroc"] <= 1 and r["n_seeds"] == 1 for r in table)
    model = summary["models"][0]
    assert model["steps"] == int(_option(argv, "--max-steps-per-epoch"))
    assert 0 <= model["test_accuracy"] <= 1 and model["test_points"] == 10000
    pixel = [
        r["auroc"] for r in table if (r["detector"], r["out_dataset"]) == ("pixel-nn", "noise")
    ]
    assert pixel and pixel[0] > 0.9  # uniform noise is far from every MNIST image


def _check_denoise(out: Path, argv: list[str]) -> None:
    rows = _json(out)["summary"]["results"]
    assert rows and all(np.isfinite(r["psnr"]) and r["points"] == 3 for r in rows)
    psnr = {(r["sigma"], r["method"]): r["psnr"] for r in rows}
    for sigma in (0.25, 0.5):  # at strong noise some method beats the noisy input
        assert (
            max(v for (s, m), v in psnr.items() if s == sigma and m != "noisy")
            > psnr[(sigma, "noisy")]
        )


def _check_merge(out: Path, argv: list[str]) -> None:
    summary = _json(out / "_summary.json")
    assert summary["summary"] and len(list(out.glob("shard-*.parquet"))) == 2


def _check_explore(out: Path, argv: list[str]) -> None:
    summary = _json(out / "_summary.json")
    assert summary["num_units"] == int(_option(argv, "--points"))
    page = (out / "index.html").read_text()
    assert 'data-testid="step"' in page or "explorer.js" in page  # the static page
    assert "http://" not in page and "https://" not in page  # nothing off the page


def _check_curvature(out: Path, argv: list[str]) -> None:
    data = _json(out)
    assert data["num_units"] == int(_option(argv, "--points")) == len(data["points"])
    points = [p for p in data["points"] if p["full_rank"]]
    assert points, "no point of full rank"
    for p in points:  # G is the pull-back of a sphere of radius 2: K = 1/4 at full rank
        assert np.allclose(p["transverse_sectional_curvature"], 0.25, atol=1e-8)


def _check_attack(out: Path, argv: list[str]) -> None:
    rows = _json(out)["rows"]
    methods = _option(argv, "--methods").split(",")
    budgets = [float(b) for b in _option(argv, "--budgets").split(",")]
    assert {r["method"] for r in rows} >= set(methods)
    for method in methods:
        rates = [r["fooling_rate"] for r in sorted((r for r in rows if r["method"] == method),
                                                   key=lambda r: r["budget"])]  # fmt: skip
        assert len(rates) == len(budgets) and all(0 <= f <= 1 for f in rates)
        assert all(a <= b + 1e-12 for a, b in zip(rates, rates[1:], strict=False)), method


def _check_generate(out: Path, argv: list[str]) -> None:
    assert (out / "_files" / "grid.png").stat().st_size > 0
    with np.load(out / "_files" / "generated.npz") as arrays:
        assert arrays["images"].shape == (2, 1, 28, 28)
        assert (arrays["predicted"] == 3).all()  # steps that change the class are undone


def _option(argv: list[str], flag: str) -> str:
    """The value of the last ``flag`` in ``argv`` (argparse keeps the last)."""
    return argv[len(argv) - 1 - argv[::-1].index(flag) + 1]


def _finite_nonnegative(values) -> bool:
    a = np.asarray(values, dtype=float)
    return a.size > 0 and bool(np.all(np.isfinite(a)) and np.all(a >= 0))


def _is_correlation(value: float) -> bool:
    return np.isnan(value) or -1 - 1e-12 <= value <= 1 + 1e-12


def _check_pruning_rows(rows: list[dict], seeds: int) -> None:
    """Accuracies in percent, losses in nats, mean and std over the seeds of the per-seed lists."""
    for r in rows:
        acc, loss = np.asarray(r["accuracies"]), np.asarray(r["losses"])
        assert acc.shape == loss.shape == (seeds,), r["condition"]
        assert np.all((acc >= 0) & (acc <= 100)) and _finite_nonnegative(loss), r
        assert r["accuracy_mean"] == pytest.approx(acc.mean()) and r["accuracy_std"] >= 0
        assert r["loss_mean"] == pytest.approx(loss.mean()) and r["loss_std"] >= 0


def _check_thermo_lenet(out: Path, argv: list[str]) -> None:
    from leafscope.experiments.thermo.lenet import MAIN_CONDITIONS

    data = _json(out)
    seeds, epochs = int(_option(argv, "--seeds")), int(_option(argv, "--epochs"))
    rows = {r["condition"]: r for r in data["rows"]}
    assert [r["condition"] for r in data["rows"]][: len(MAIN_CONDITIONS)] == MAIN_CONDITIONS
    _check_pruning_rows(data["rows"], seeds)
    assert rows["original"]["accuracy_mean"] > 0.20  # it learned: chance is 10 %
    assert not data["summary"]["trained_to_chance"]
    assert len(data["per_seed"]) == seeds
    for record in data["per_seed"]:
        filters = data["per_seed"][0]["monitor"]["n_groups"][data["summary"]["layer"]]
        assert filters == 6  # LeNet-5's conv1
        assert set(record["temperatures"]) == set(data["variants"])
        for name, temps in record["temperatures"].items():
            assert len(temps) == filters and _finite_nonnegative(temps), name
        for key in ("l1", "taylor", "single_filter_accuracy_drop"):
            assert len(record[key]) == filters and np.all(np.isfinite(record[key])), key
        assert _finite_nonnegative(record["l1"])
        assert all(-1 <= d <= 1 for d in record["single_filter_accuracy_drop"])  # fractions
        assert all(_is_correlation(v) for v in record["spearman_temperature_vs_drop"].values())
        assert len(record["train_history"]) == epochs
    # the main table's hot/cold rows are those of the main temperature definition
    main_rows = data["variants"][data["per_seed"][0]["main_temperature"]]
    for variant in data["variants"].values():
        _check_pruning_rows(variant, seeds)
    assert all(rows[r["condition"]] == r for r in main_rows)
    assert {p["condition"] for p in data["published"]} <= set(rows)


def _check_thermo_gnn(out: Path, argv: list[str]) -> None:
    data = _json(out)
    seeds = int(_option(argv, "--seeds"))
    assert data["metric"] == "accuracy" and data["summary"]["dataset"] == "cora"
    curves = data["curves"]
    criteria = sorted({c["criterion"] for c in curves})
    ratios = sorted({c["ratio"] for c in curves})
    assert {"cold", "hot", "random"} <= set(criteria) and ratios[0] == 0
    assert len(curves) == len(criteria) * len(ratios)  # the full grid, each point once
    for c in curves:
        assert len(c["values"]) == seeds and all(0 <= v <= 1 for v in c["values"])
        assert c["metric_mean"] == pytest.approx(np.mean(c["values"]))
    before = [s["metric_before_pruning"] for s in data["per_seed"]]
    assert len(before) == seeds and np.mean(before) > 1 / 7 + 0.1  # 7 classes: it learned
    for c in curves:  # nothing pruned: every criterion gives the unpruned model
        if c["ratio"] == 0:
            assert c["values"] == pytest.approx(before)
    for s in data["per_seed"]:
        low, high = s["temperature_min_max"]
        assert _finite_nonnegative([low, high]) and low <= high
        assert 0 <= s["overlap_coldest_half_rarest_half"] <= 1
        assert _is_correlation(s["spearman_temperature_vs_frequency"])


def _check_thermo_filters(out: Path, argv: list[str]) -> None:
    data = _json(out)
    seeds, epochs = int(_option(argv, "--seeds")), int(_option(argv, "--epochs"))
    config = data["summary"]
    filters, k = config["filters"], config["k"]
    assert config["layer"] == _option(argv, "--layer") and k == max(1, filters // 3)
    assert config["train_size"] + config["test_size"] == 300 + 100
    conditions = ["original", f"without_{k}_hottest", f"without_{k}_coldest", f"without_{k}_random"]
    assert [r["condition"] for r in data["rows"]] == conditions
    _check_pruning_rows(data["rows"], seeds)
    for record in data["per_seed"]:
        assert len(record["temperatures"]) == filters
        assert _finite_nonnegative(record["temperatures"]) and _finite_nonnegative(record["l1"])
        assert len(record["single_filter_accuracy_drop"]) == filters
        assert len(record["train_history"]) == epochs
    accuracy, chance = data["rows"][0]["accuracies"], config["chance_accuracy"]
    assert config["num_classes"] == 10 and chance == pytest.approx(0.1)
    assert config["trained_to_chance"] == any(a <= chance + 0.02 for a in accuracy)


def _check_nnk(out: Path, argv: list[str]) -> None:
    epochs = _json(out)["epochs"]
    assert epochs and all(0 <= e["loo_error"] <= 1 for e in epochs)


def _check_early_stopping(out: Path, argv: list[str]) -> None:
    data = _json(out)
    assert 1 <= data["validation"]["stop_epoch"] <= 2
    assert 0 <= data["validation"]["test_accuracy_at_best"] <= 1


def _check_stability(out: Path, argv: list[str]) -> None:
    text = json.dumps(_json(out))
    jaccard = [float(v) for v in re.findall(r'"jaccard": ([0-9.eE+-]+)', text)]
    assert jaccard and all(0 <= j <= 1 for j in jaccard)


def _check_invariance(out: Path, argv: list[str]) -> None:
    data = _json(out)
    models = [m.split("=")[0] for m in _option(argv, "--models").split(",")]
    layers = _option(argv, "--layers").split(",")
    angles = [float(a) for a in _option(argv, "--angles").split(",")]
    points = int(_option(argv, "--points"))
    assert data["angles"] == angles and data["points"] == points
    assert list(data["results"]) == list(data["accuracy"]) == models
    for model in models:
        accuracy = data["accuracy"][model]  # of the points, unrotated and at each angle
        assert sorted(float(a) for a in accuracy) == [0.0, *angles]
        for value in accuracy.values():
            assert 0 <= value <= 1 and value * points == pytest.approx(round(value * points))
        geometry = data["results"][model]
        assert list(geometry) == ["input", *layers]  # one entry per requested layer
        for layer, g in geometry.items():
            d = np.asarray(g["diameter"])
            assert g["layer"] == layer and d.shape == (points,) and _finite_nonnegative(d)
            assert g["diameter_mean"] == pytest.approx(d.mean())
            assert g["diameter_median"] == pytest.approx(np.median(d))
            assert _finite_nonnegative([g["spread_mean"], g["spread_median"]])
            assert g["n_selected_mean"] >= 1  # NNK keeps at least the nearest neighbour
    # the input layer does not depend on the model
    first, *others = (data["results"][m]["input"] for m in models)
    assert all(o == first for o in others)


Check = Callable[[Path, list[str]], None]  # (result, the command's argv)
# name -> (options appended to keep the run tiny, where the result lands, check)
_SUBCOMMANDS: dict[str, tuple[list[str], str, Check | None]] = {
    "demo": ([], "", None),  # run end to end by tests/cli/test_spectrum_demo.py
    "train": (["--limit", "8000", "--no-progress"], "RUN", _check_train),
    "spectrum": (["--points", "8"], "OUT", _check_spectrum),
    "merge": ([], "DIR", _check_merge),
    "path": (["--max-steps", "20"], "DIR", _check_path),
    "walk": (["--pairs", "2", "--pool", "20", "--max-steps", "10", "--vertical-steps", "10",
              "--vertical-points", "4"], "OUT", _check_walk),
    "involutivity": (["--points", "2"], "OUT", _check_involutivity),
    "transfer": (["--points", "8", "--transfer-train", "300", "--transfer-val", "100",
                  "--no-progress"], "OUT", _check_transfer),
    "ood": (["--points", "60", "--fit-points", "300", "--detectors", "msp,energy,knn"], "OUT",
            _check_ood),
    "ood-protocol": (["--seeds", "1", "--regimes", "partial", "--max-steps-per-epoch", "20",
                      "--ood", "noise,rotated-90", "--points", "30", "--fit-points", "100",
                      "--leaf-steps", "1", "--leaf-scale-points", "4", "--no-progress"], "OUT",
                     _check_ood_protocol),
    "denoise": (["--points", "3", "--pool", "60", "--tune-points", "3", "--leaf-steps", "3"],
                "OUT", _check_denoise),
    "generate": (["--points", "2", "--steps", "3", "--pool", "60"], "DIR", _check_generate),
    "explore": (["--no-progress"], "DIR", _check_explore),
    "curvature": (["--no-progress"], "OUT", _check_curvature),
    "attack": (["--points", "16", "--no-progress"], "OUT", _check_attack),
    "nnk": (["--points", "80", "--test-points", "80", "--no-orientation"], "OUT", _check_nnk),
    "early-stopping": (["--train-points", "400", "--val-points", "100", "--points", "60",
                        "--epochs", "2", "--json", "OUT"], "OUT", _check_early_stopping),
    "stability": (["--points", "60"], "OUT", _check_stability),
    "invariance": (["--points", "12", "--angles", "90,180", "--json", "OUT"], "OUT",
                   _check_invariance),
    # lr 0.01 (the README's): chance after 42 steps; 0.1 with momentum learns in as many
    "thermo-lenet": (["--seeds", "1", "--epochs", "1", "--train-points", "1500",
                      "--test-points", "1500", "--lr", "0.1", "--momentum", "0.9",
                      "--no-progress", "--json", "OUT"], "OUT", _check_thermo_lenet),
    "thermo-gnn": (["--seeds", "1", "--epochs", "5", "--no-progress", "--json", "OUT"], "OUT",
                   _check_thermo_gnn),
    "thermo-filters": (["--train-points", "300", "--test-points", "100", "--seeds", "1",
                        "--epochs", "1", "--no-progress", "--json", "OUT"], "OUT",
                       _check_thermo_filters),
}  # fmt: skip
_THERMO: dict[str, tuple[list[str], Check]] = {}  # the thermo-* commands are listed above


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny LeNet runs (seeds 0 and 1) trained with the README's own train line."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for seed in (0, 1):
        run = root / f"seed{seed}"
        argv = ["train", "--dataset", "mnist", "--model", "lenet", "--epochs", "1", "--out"]
        argv += [str(run), "--limit", "8000", "--seed", str(seed), "--no-progress", "--lr", "0.05"]
        argv += ["--checkpoint-every-steps", "40"]
        assert main(argv) == 0
        out[f"seed{seed}"] = run
    return out


def _substitute(words: list[str], runs: dict[str, Path], tmp: Path) -> list[str]:
    ckpt = str(runs["seed0"] / "epoch_0001.pt")
    ckpt_b = str(runs["seed1"] / "epoch_0001.pt")
    table = {
        "CKPT": ckpt,
        "A,B,C": f"{ckpt},{ckpt_b},{runs['seed0'] / 'epoch_0000.pt'}",
        "RUN": str(tmp / "run") if words[:1] == ["train"] else str(runs["seed0"]),
        "RUN_A,RUN_B": f"{runs['seed0']},{runs['seed1']}",
        "plain=RUN_A,rotated=RUN_B": f"plain={runs['seed0']},rotated={runs['seed1']}",
        "OUT": str(tmp / "out.json"),
        "DIR": str(tmp / "dir"),
        "D": "mnist",
    }
    return [table.get(w, w) for w in words]


def test_readme_lists_every_command_and_each_parses():
    found = {w[0] if w[0] != "thermo" else f"thermo {w[1]}" for w in readme_commands()}
    expected = {n for n in _SUBCOMMANDS} | {f"thermo {n}" for n in _THERMO}
    assert found == expected, f"README table vs tested commands: {found ^ expected}"
    parser = build_parser()
    for words in readme_commands():
        parser.parse_args(_substitute(words, {"seed0": Path("a"), "seed1": Path("b")}, Path(".")))


@pytest.mark.parametrize(
    "words", readme_commands(), ids=lambda w: " ".join(w[:2] if w[0] == "thermo" else w[:1])
)
def test_readme_command_runs_and_is_sensible(words, runs, tmp_path):
    if words[0] == "thermo":
        extra, check = _THERMO[words[1]]
        target = tmp_path / "out.json"
        argv = _substitute(words, runs, tmp_path) + extra + ["--json", str(target)]
    else:
        extra, where, check = _SUBCOMMANDS[words[0]]
        if check is None:
            pytest.skip("run end to end by its own test module")
        argv = _substitute(words, runs, tmp_path) + _substitute(extra, runs, tmp_path)
        target = Path(_substitute([where], runs, tmp_path)[0])
        if words[0] == "merge":  # two slices of a sharded spectrum, to be joined
            base = ["spectrum", "--checkpoint", str(runs["seed0"] / "epoch_0001.pt"), "--points"]
            base += ["8", "--shard-size", "4", "--out", str(target), "--no-progress"]
            assert main([*base, "--shard", "1/2"]) == 0 and main([*base, "--shard", "2/2"]) == 0
    assert main(argv) == 0, argv
    check(target, argv)
