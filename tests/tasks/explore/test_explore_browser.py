"""The explorer page in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright opens ``leafscope explore``'s folder from ``file://`` (after copying it elsewhere),
clicks a point, walks to both ends of the slider and checks that the probabilities shown are the
model's on the image shown (read back from the rendered ``<img>``), that the image moves, that
the gallery sorts and filters, and that nothing is logged as an error or requested off the page.

Skipped, saying why, without a Chromium binary or the ``playwright`` package (``apt-get install
chromium``; ``pip install playwright``: no browser download is needed or made).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
READ_PIXELS = """img => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(img, 0, 0);
    const data = g.getImageData(0, 0, c.width, c.height).data;
    return {w: c.width, h: c.height, data: Array.from(data)};
}"""


def chromium_path() -> str | None:
    for candidate in (os.environ.get("LEAFSCOPE_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium binary: apt-get install chromium (or set LEAFSCOPE_CHROMIUM)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install playwright"
    )
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _explore(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "made"
    done = subprocess.run(
        [sys.executable, "-m", "leafscope.cli.main", "explore", *args, "--out", str(out),
         "--device", "cpu", "--no-progress", "--threads", "2"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "index.html" in done.stdout
    moved = tmp_path / "elsewhere" / "explorer"  # the folder still works once copied
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    return moved


def _shown(page) -> tuple[np.ndarray, np.ndarray, str]:
    """The rendered current image (H, W, 4) uint8, the probabilities shown, the image's src."""
    current = page.locator('[data-testid="current"]')
    pixels = current.evaluate(READ_PIXELS)
    image = np.asarray(pixels["data"], dtype=np.uint8).reshape(pixels["h"], pixels["w"], 4)
    shown = page.locator('[data-testid="probability"]')
    classes = [int(shown.nth(i).get_attribute("data-class")) for i in range(shown.count())]
    assert classes == list(range(len(classes)))
    values = np.asarray([float(shown.nth(i).get_attribute("data-value")) for i in classes])
    return image, values, current.get_attribute("src")


def _check_page(browser, folder: Path, model: torch.nn.Module, channels: int, min_points: int):
    page = browser.new_page()
    errors, remote = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on(
        "request",
        lambda r: remote.append(r.url) if not r.url.startswith(("file://", "data:")) else None,
    )
    page.goto((folder / "index.html").as_uri())
    points = page.locator('[data-testid="point"]')
    assert points.count() >= min_points
    target = points.nth(min(3, points.count() - 1))
    index = target.get_attribute("data-index")
    target.click()
    assert index in page.locator("#detail h2").first.inner_text()
    directions = page.locator('[data-testid="direction"]')
    assert directions.count() >= 3
    kinds = [directions.nth(i).get_attribute("data-kind") for i in range(directions.count())]
    assert "leaf" in kinds and "kernel" in kinds
    slider = page.locator('[data-testid="step"]')
    assert slider.get_attribute("type") == "range"
    worst = 0.0
    for d in range(directions.count()):
        directions.nth(d).click()
        ends = []
        for value in (slider.get_attribute("min"), slider.get_attribute("max")):
            slider.fill(value)
            image, shown, src = _shown(page)
            # the rendered pixels are the PNG's: grey pixels come back as R = G = B
            png = np.array(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))
            png = png[..., None] if png.ndim == 2 else png
            assert np.array_equal(image[..., :3], np.broadcast_to(png, image[..., :3].shape))
            pixels = image[..., :channels].astype(np.float32) / 255.0
            x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
            with torch.no_grad():
                model_probs = torch.softmax(model(x).double(), dim=1)[0].numpy()
            assert shown.shape == model_probs.shape
            worst = max(worst, float(np.abs(shown - model_probs).max()))
            ends.append((image, shown))
        assert not np.array_equal(ends[0][0], ends[1][0]), f"direction {d}: the image stayed"
        if kinds[d] == "leaf" and d == 0:
            assert np.abs(ends[0][1] - ends[1][1]).max() > 0.05  # the model notices leaf 1
    assert worst < 0.02, worst
    # the gallery sorts and filters
    page.select_option("#sort", "trace")
    page.select_option("#order", "desc")
    page.wait_for_function("document.querySelector('#sort').value === 'trace'")
    order = [int(points.nth(i).get_attribute("data-index")) for i in range(points.count())]
    page.select_option("#filter-correct", "wrong")
    wrong = points.count()
    page.select_option("#filter-correct", "correct")
    right = points.count()
    page.select_option("#filter-correct", "")
    assert wrong + right == points.count() >= min_points
    page.close()
    assert not errors, errors
    assert not remote, remote
    return order


def test_mnist_explorer_in_chromium(browser, mnist_checkpoint, tmp_path):
    from leafscope.models.spec import ModelSpec

    checkpoint, data = mnist_checkpoint
    folder = _explore(
        tmp_path, "--checkpoint", str(checkpoint), "--dataset", "mnist", "--split", "test",
        "--points", "24", "--data-dir", str(data),
    )  # fmt: skip
    model = ModelSpec(checkpoint=str(checkpoint)).load(torch.device("cpu"))
    order = _check_page(browser, folder, model, channels=1, min_points=24)
    summary = json.loads((folder / "_summary.json").read_text())
    assert summary["files"][0] == "index.html"
    import pyarrow.parquet as pq

    rows = pq.read_table(sorted(folder.glob("shard-*.parquet"))[0]).to_pydict()
    by_trace = sorted(zip(rows["trace"], rows["index"], strict=True), key=lambda r: (-r[0], r[1]))
    assert order == [i for _, i in by_trace]  # the gallery sorted by trace, descending


def test_rgb_explorer_in_chromium(browser, explore_files, tmp_path):
    path, spec = explore_files["rgb"]
    folder = _explore(
        tmp_path, "--model", spec.factory, "--weights", spec.weights, "--dataset", str(path),
        "--points", "12", "--steps", "2",
    )  # fmt: skip
    model = spec.load(torch.device("cpu"))
    _check_page(browser, folder, model, channels=3, min_points=12)


def test_vector_explorer_in_chromium(browser, explore_files, tmp_path):
    """Vectors are drawn as bars; the values behind the bars are what the model scored."""
    path, spec = explore_files["vector"]
    folder = _explore(
        tmp_path, "--model", spec.factory, "--model-args", spec.factory_kwargs, "--weights",
        spec.weights, "--dataset", str(path), "--points", "6", "--steps", "2",
    )  # fmt: skip
    model = spec.load(torch.device("cpu"))
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((folder / "index.html").as_uri())
    page.locator('[data-testid="point"]').nth(2).click()
    assert page.locator('[data-testid="direction"]').count() == 3  # C - 1 = 2 leaves, 1 kernel
    slider = page.locator('[data-testid="step"]')
    seen = []
    for value in (slider.get_attribute("min"), slider.get_attribute("max")):
        slider.fill(value)
        current = page.locator('[data-testid="current"]')
        x = torch.tensor(json.loads(current.get_attribute("data-values")), dtype=torch.float32)
        assert current.locator("rect").count() == x.numel()
        shown = page.locator('[data-testid="probability"]')
        values = np.asarray([float(shown.nth(i).get_attribute("data-value")) for i in range(3)])
        with torch.no_grad():
            expected = torch.softmax(model(x[None]).double(), dim=1)[0].numpy()
        assert np.abs(values - expected).max() < 1e-3
        seen.append(x)
    assert not torch.equal(seen[0], seen[1])
    page.close()
    assert not errors, errors
