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


def _check_train(out: Path, run: Path) -> None:
    record = _json(run / "metrics.json")["history"][-1]
    assert record["val_accuracy"] > 0.2  # twice chance after 112 steps of the defaults (0.31)


def _check_spectrum(out: Path, run: Path) -> None:
    points = _json(out)["points"]
    assert len(points) == 8
    for p in points:
        eig = 10 ** np.asarray(p["log10_eigenvalues"])
        assert len(eig) <= 9 and np.all(np.diff(eig) <= 1e-12 * eig[0])
        assert np.isclose(eig.sum(), 10 ** p["log10_trace"], rtol=1e-4)


def _check_path(out: Path, run: Path) -> None:
    assert "distance" in json.dumps(_json(next(out.glob("*.json"))))


def _check_walk(out: Path, run: Path) -> None:
    data = _json(out)
    assert data["horizontal"] and data["vertical"]


def _check_involutivity(out: Path, run: Path) -> None:
    data = _json(out)
    ranks = data["points"] if "points" in data else data["results"]
    assert ranks


def _check_transfer(out: Path, run: Path) -> None:
    rows = _json(out)["summary"]["rows"]
    accuracy = {r["dataset"]: r["transfer_accuracy"] for r in rows}
    assert all(0 <= a <= 1 for a in accuracy.values() if a is not None)
    assert accuracy["mnist"] > 0.5


def _check_ood(out: Path, run: Path) -> None:
    rows = _json(out)["summary"]["results"]
    assert rows and all(0 <= r["auroc"] <= 1 for r in rows)
    noise = [r["auroc"] for r in rows if r["out_dataset"] == "noise" and r["detector"] == "energy"]
    assert noise and min(noise) > 0.5


def _check_ood_protocol(out: Path, run: Path) -> None:
    table = _json(out)["summary"]["table"]
    assert table and all(0 <= r["auroc"] <= 1 for r in table)
    pixel = [
        r["auroc"] for r in table if (r["detector"], r["out_dataset"]) == ("pixel-nn", "noise")
    ]
    assert pixel and pixel[0] > 0.9  # uniform noise is far from every MNIST image


def _check_denoise(out: Path, run: Path) -> None:
    rows = _json(out)["results"]
    assert rows and all(np.isfinite(r["psnr"]) for r in rows)


def _check_merge(out: Path, run: Path) -> None:
    summary = _json(out / "_summary.json")
    assert summary["summary"] and len(list(out.glob("shard-*.parquet"))) == 2


def _check_generate(out: Path, run: Path) -> None:
    assert list(out.glob("*.png")) and list(out.glob("*.npz"))


def _check_thermo(out: Path, run: Path) -> None:
    assert _json(out)


def _check_nnk(out: Path, run: Path) -> None:
    epochs = _json(out)["epochs"]
    assert epochs and all(0 <= e["loo_error"] <= 1 for e in epochs)


def _check_early_stopping(out: Path, run: Path) -> None:
    data = _json(out)
    assert 1 <= data["validation"]["stop_epoch"] <= 2
    assert 0 <= data["validation"]["test_accuracy_at_best"] <= 1


def _check_stability(out: Path, run: Path) -> None:
    text = json.dumps(_json(out))
    jaccard = [float(v) for v in re.findall(r'"jaccard": ([0-9.eE+-]+)', text)]
    assert jaccard and all(0 <= j <= 1 for j in jaccard)


def _check_invariance(out: Path, run: Path) -> None:
    assert _json(out)


Check = Callable[[Path, Path], None]
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
    "generate": (["--n", "2", "--steps", "3", "--pool", "60"], "DIR", _check_generate),
    "nnk": (["--points", "80", "--test-points", "80", "--no-orientation"], "OUT", _check_nnk),
    "early-stopping": (["--train-points", "400", "--val-points", "100", "--points", "60",
                        "--epochs", "2", "--json", "OUT"], "OUT", _check_early_stopping),
    "stability": (["--points", "60"], "OUT", _check_stability),
    "invariance": (["--points", "12", "--angles", "90,180", "--json", "OUT"], "OUT",
                   _check_invariance),
}  # fmt: skip
_THERMO: dict[str, tuple[list[str], Check]] = {
    "lenet": (["--seeds", "1", "--epochs", "1", "--limit", "1500", "--quiet"], _check_thermo),
    "gnn": (["--seeds", "1", "--epochs", "5", "--quiet"], _check_thermo),
    "filters": (["--train-points", "300", "--test-points", "100", "--seeds", "1", "--epochs",
                 "1", "--quiet"], _check_thermo),
}  # fmt: skip


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
            assert main([*base, "--shard", "0/2"]) == 0 and main([*base, "--shard", "1/2"]) == 0
    assert main(argv) == 0, argv
    check(target, target)
