"""End-to-end: `leafscope demo` on a small slice of real MNIST, then `leafscope spectrum`."""

import json

import pytest

from leafscope.cli.main import main
from leafscope.testing import shared_data_dir

pytestmark = pytest.mark.skipif(shared_data_dir() is None, reason="shared MNIST files absent")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--train-limit",
            "2000",
            "--points",
            "16",
            "--no-progress",
            "--quick",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return out


def test_demo_writes_report_with_figures(demo_out):
    html = (demo_out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 9
    for title in (
        "Foliation",
        "Out-of-distribution",
        "Knowledge transfer",
        "Denoising",
        "Neighbourhood geometry",
    ):
        assert title in html
    results = json.loads((demo_out / "results.json").read_text())
    for name in ("MNIST test", "uniform noise"):
        summary = results["spectra"][name]
        assert summary["median_log10_highest"] >= summary["median_log10_lowest"]
    assert results["across_checkpoints"][0]["step"] == 0
    assert all(sum(c["rank_counts"]) == 64 for c in results["across_checkpoints"])
    nnk = results["nnk"]
    assert nnk["epochs"] and all(0 <= e["loo_error"] <= 1 for e in nnk["epochs"])
    assert nnk["epochs"][-1]["layers"]["conv1"]["n_neighbors"]["mean"] <= 15


def test_spectrum_command_json(demo_out, tmp_path):
    ckpt = sorted((demo_out / "run").glob("epoch_*.pt"))[-1]
    out = tmp_path / "spectrum.json"
    assert main(["spectrum", "--checkpoint", str(ckpt), "--points", "5", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["points"]) == 5
    for point in result["points"]:
        logs = point["log10_eigenvalues"]
        assert len(logs) == 9 and logs == sorted(logs, reverse=True)
        assert point["rank"] <= 9
        assert 0.1 <= point["max_probability"] <= 1
    medians = result["summary"]
    highest = sorted(p["log10_eigenvalues"][0] for p in result["points"])[2]
    assert medians["median_log10_highest"] == pytest.approx(highest)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--points", "0"], "--points must be >= 1"),
        (["--indices", "1,x"], "comma-separated integers"),
        (["--indices", "70000"], "out of range"),
        (["--dataset", "no-such-set"], "no-such-set"),
    ],
)
def test_spectrum_bad_arguments(demo_out, capsys, argv, message):
    ckpt = sorted((demo_out / "run").glob("epoch_*.pt"))[-1]
    assert main(["spectrum", "--checkpoint", str(ckpt), *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint(capsys):
    assert main(["spectrum", "--checkpoint", "/nonexistent/x.pt"]) == 2
    assert "no checkpoint at /nonexistent/x.pt" in capsys.readouterr().err
