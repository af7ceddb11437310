"""`leafscope demo --dataset cifar10` on CIFAR-10 / SVHN files fabricated in the upstream layout
(checksums dropped for the test only), and the missing-archive message."""

from __future__ import annotations

import io
import json
import pickle
import stat
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from leafscope.cli.main import main
from leafscope.data import registry
from leafscope.data.registry import CIFAR10, FileSpec
from leafscope.demo import demo_config, run_demo

# Saturated colours, one per class: a model can tell them apart, and any grey rendering of
# these images loses them (the colour check below would fail).
_COLOURS = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 128, 128]],
    dtype=np.float64,
)  # fmt: skip


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3072) uint8 rows: each image its class colour times a random vertical ramp."""
    ramp = np.linspace(0.4, 1.0, 32)[None, None, :, None] * rng.uniform(
        0.7, 1.0, (len(labels), 1, 1, 1)
    )
    x = _COLOURS[labels][:, :, None, None] * ramp + rng.normal(0, 12, (len(labels), 3, 32, 32))
    return np.clip(x, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def _fabricate_cifar10(root: Path, per_batch: int, test: int) -> Path:
    """cifar-10-python.tar.gz with 5 training batches of ``per_batch`` and ``test`` test images."""
    rng = np.random.default_rng(0)
    members = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, size=test if name == "test_batch" else per_batch)
        record = {"batch_label": name, "labels": labels.tolist(), "data": _images(labels, rng)}
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(record, protocol=2)
    meta = {"label_names": list(CIFAR10.class_names), "num_vis": 3072}
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(meta, protocol=2)
    path = root / "cifar10" / "cifar-10-python.tar.gz"
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def _fabricate_svhn(root: Path, n: int) -> None:
    """svhn/test_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) in 1..10 (10 = digit 0)."""
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=n)
    x = _images(labels, rng).reshape(n, 3, 32, 32).transpose(2, 3, 1, 0)
    (root / "svhn").mkdir()
    savemat(root / "svhn" / "test_32x32.mat", {"X": x, "y": (labels + 1)[:, None].astype(np.uint8)})


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root with fabricated CIFAR-10 and SVHN test files; checksums dropped (test only);
    the user's data folders hidden."""
    from leafscope.data import search

    for key in ("cifar10", "svhn", "cifar100"):
        spec = registry.IMAGE_DATASETS[key]
        files = {name: FileSpec(name) for name in spec.files}
        monkeypatch.setitem(registry.IMAGE_DATASETS, key, replace(spec, files=files))
    monkeypatch.setattr(search, "_shared_roots", lambda: [])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LEAFSCOPE_DATA", raising=False)
    root = tmp_path / "data"
    _fabricate_cifar10(root, per_batch=40, test=60)
    _fabricate_svhn(root, 40)
    return root


def _colourful_fraction(png: Path) -> float:
    """Fraction of pixels whose channels differ by more than 0.15 (grey pixels: 0)."""
    rgb = imread(png)[..., :3]
    return float((rgb.max(axis=-1) - rgb.min(axis=-1) > 0.15).mean())


def _check_report(out: Path, image_figures: tuple[str, ...]) -> dict:
    html = (out / "report.html").read_text()
    for title in ("Training", "Spectrum", "during training", "Thermodynamics", "Foliation",
                  "Out-of-distribution detection (CIFAR-10 in)", "Knowledge transfer",
                  "Denoising", "Neighbourhood geometry", "Reproduce"):  # fmt: skip
        assert title in html, title
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert html.count("data:image/png;base64,") == len(figures) >= 12
    for name in figures:
        assert f'href="figures/{name}"' in html
    for name in image_figures:  # RGB inputs are drawn in colour
        assert _colourful_fraction(out / "figures" / name) > 0.02, name
    return json.loads((out / "results.json").read_text())


def test_demo_cifar10_small_model(cifar_root: Path, tmp_path: Path) -> None:
    """The CIFAR-10 path end to end with a small model (LeNet for 3×32×32): the analogues
    of the MNIST sections, SVHN as an out set, CIFAR-100 skipped with its reason."""
    out = tmp_path / "out"
    cfg = demo_config(
        "cifar10", quick=True, out=out, model="lenet", data_dir=str(cifar_root),
        progress=False, nnk_layers=("conv1", "conv2", "fc1"), involutivity_points=1,
    )  # fmt: skip
    assert cfg.augment and cfg.train_limit == 200
    run_demo(cfg)
    results = _check_report(out, ("leaf_path.png", "vertical_walk.png", "denoising.png"))
    assert results["config"]["dataset"] == "cifar10"
    ood = results["ood"]
    assert {r["out_dataset"] for r in ood["rows"]} == {"svhn", "noise"}
    assert "cifar-100-python.tar.gz" in ood["skipped"]["cifar100"]
    assert {r["detector"] for r in ood["rows"]} >= {"leaf-distance", "msp", "dim-trace"}
    assert [r["dataset"] for r in results["transfer"]["rows"]] == ["cifar10", "svhn", "noise"]
    # 180 training images, batch 32: 6 steps, one loss per step; checkpoints at 0, 2, 4, 6
    assert len(results["step_losses"]) == 6 == results["history"][-1]["step"]
    assert [c["step"] for c in results["across_checkpoints"]] == [0, 2, 4, 6]
    thermo = results["thermo"]
    assert len(thermo["temperature"]) == 6 and thermo["removed"] == 2 and thermo["kept"] == 3
    assert thermo["rows"][0]["condition"] == "original"
    assert len(results["spectra"]["CIFAR-10 test"]) and results["test_points"] == 60


@pytest.mark.slow
def test_demo_cifar10_resnet18_cli(cifar_root: Path, tmp_path: Path) -> None:
    """`leafscope demo --dataset cifar10 --quick`: ResNet-18, as users run it."""
    out = tmp_path / "out"
    argv = ["demo", "--dataset", "cifar10", "--quick", "--out", str(out), "--no-progress",
            "--data-dir", str(cifar_root)]  # fmt: skip
    assert main(argv) == 0
    results = _check_report(out, ("leaf_path.png", "denoising.png"))
    assert results["config"]["model"] == "resnet18"
    assert len(results["thermo"]["temperature"]) == 64  # the stem's filters


def test_demo_cifar10_missing_archive(tmp_path: Path, monkeypatch, capsys) -> None:
    from leafscope.data import search

    monkeypatch.setattr(search, "_shared_roots", lambda: [])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("LEAFSCOPE_DATA", str(tmp_path / "env-data"))
    out = tmp_path / "out"
    argv = ["demo", "--dataset", "cifar10", "--out", str(out), "--data-dir", str(tmp_path / "d")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cifar-10-python.tar.gz" in err and "does not download" in err
    for folder in (tmp_path / "d", tmp_path / "env-data", tmp_path / "cache" / "leafscope"):
        assert str(folder) in err
    assert not out.exists()


def test_report_files_are_readable_by_others(tmp_path: Path) -> None:
    """report.html and the figures: 0644 under umask 022 (not mkstemp's 0600)."""
    import os

    from matplotlib.figure import Figure

    from leafscope.report import Report

    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    report = Report("r")
    report.section("s").text("t").figure(fig, "curve.png")
    old = os.umask(0o022)
    try:
        page = report.write(tmp_path)
    finally:
        os.umask(old)
    for path in (page, tmp_path / "figures" / "curve.png"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert 'href="figures/curve.png"' in page.read_text()
