"""End-to-end: `leafscope demo` on a small slice of real MNIST, then `leafscope spectrum`."""

import json

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from leafscope.cli.main import main
from leafscope.data import load_images, train_val_split
from leafscope.data.spec import select_points
from leafscope.models.features import layer_features
from leafscope.testing import shared_data_dir
from leafscope.training import load_checkpoint

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
    figures = sorted(p.name for p in (demo_out / "figures").glob("*.png"))
    assert html.count("data:image/png;base64,") == len(figures) >= 14
    assert all(f'href="figures/{name}"' in html for name in figures)
    assert {"training_curve.png", "temperature.png", "pruning.png"} <= set(figures)
    for title in (
        "Thermodynamics",
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
    # 1800 training images, batch 64: 29 steps, a loss each (the curve is not a single dot)
    assert len(results["step_losses"]) == 29 == results["history"][-1]["step"]
    assert [c["step"] for c in results["across_checkpoints"]] == [0, 29]
    thermo = results["thermo"]
    assert len(thermo["temperature"]) == 6 and thermo["removed"] == 2 and thermo["kept"] == 3
    rows = {r["condition"]: r["accuracy_mean"] for r in thermo["rows"]}
    assert rows["original"] == pytest.approx(100 * results["test_accuracy"])
    assert set(rows) >= {"without_2_hottest", "only_3_coldest", "without_2_largest_l1",
                         "only_3_random"}  # fmt: skip
    detectors = {r["detector"] for r in results["ood"]["rows"]}
    assert {"leaf-distance", "pixel-nn", "mahalanobis", "knn"} <= detectors
    assert all(sum(c["rank_counts"]) == 64 for c in results["across_checkpoints"])
    nnk = results["nnk"]
    assert nnk["epochs"] and all(0 <= e["loo_error"] <= 1 for e in nnk["epochs"])
    last = nnk["epochs"][-1]
    got = last["layers"]["conv1"]["n_neighbors"]["mean"]
    ref, unsure = _nnls_neighbour_count(last["checkpoint"], "conv1", points=150, k=15)
    assert abs(got - ref) <= unsure * 15 + 1e-9 and unsure < 0.05


def _nnls_neighbour_count(checkpoint, layer, points, k):
    """Mean NNK neighbours per node of the demo's NNK section, recomputed independently: exact
    kNN on the L2-normalised features and one scipy NNLS per node with the cosine kernel
    ½ + ½ cos = φᵀφ', φ(z) = (1, ẑ)/√2. Also returns the fraction of nodes whose solve lies
    within 1e-6 of a support change (those may go either way in float32)."""
    train_all = load_images("mnist", "train", limit=2000)  # the demo's --train-limit
    train_idx, _ = train_val_split(len(train_all), 0.1, seed=0)
    images = train_all.subset(train_idx).images[:points]
    feats = layer_features(load_checkpoint(checkpoint), images, [layer])[layer]
    Z = feats.double().numpy()
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    phi = np.hstack([np.ones((points, 1)), Z]) / np.sqrt(2)
    d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    counts, unsure = [], 0
    for i, S in enumerate(np.argsort(d2, axis=1)[:, :k]):
        theta = nnls(phi[S].T, phi[i])[0]
        grad = phi[S] @ (phi[S].T @ theta - phi[i])
        counts.append(int((theta > 0).sum()))
        unsure += min(theta[theta > 0].min(), grad[theta == 0].min(initial=np.inf)) < 1e-6
    return float(np.mean(counts)), unsure / points


def test_spectrum_command_json(demo_out, tmp_path):
    ckpt = sorted((demo_out / "run").glob("epoch_*.pt"))[-1]
    out = tmp_path / "spectrum.json"
    assert main(["spectrum", "--checkpoint", str(ckpt), "--points", "5", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["points"]) == 5
    model = load_checkpoint(ckpt).double()
    test = load_images("mnist", "test")
    assert [p["index"] for p in result["points"]] == select_points(test.labels, points=5)
    images = test.images[[p["index"] for p in result["points"]]].double()
    for point, x in zip(result["points"], images, strict=True):
        logs = point["log10_eigenvalues"]
        assert len(logs) == 9
        # independent dense G = Jᵀ (diag p − p pᵀ) J at the point (J: logits w.r.t. pixels)
        J = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x).reshape(10, -1)
        p = torch.softmax(model(x[None])[0], 0).detach()
        G = J.T @ (torch.diag(p) - torch.outer(p, p)) @ J
        dense = torch.linalg.eigvalsh(G).flip(0)
        top = dense[0]
        np.testing.assert_allclose(10.0 ** np.array(logs), dense[:9], rtol=1e-6, atol=1e-12 * top)
        assert float(dense[9:].abs().max()) < 1e-10 * top  # rank <= C - 1 = 9
        assert point["log10_trace"] == pytest.approx(float(torch.trace(G).log10()), abs=1e-9)
        assert point["log10_trace"] == pytest.approx(float(dense.sum().log10()), abs=1e-9)
        assert point["rank"] == int((dense[:9] > 1e-12 * top).sum())
        assert point["predicted"] == int(p.argmax()) and point["max_probability"] == pytest.approx(
            float(p.max()), rel=1e-9
        )
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
