"""``explore``: the rows are G's spectrum and eigen-directions, each walk image is exactly the
8-bit image whose probabilities are stored beside it, shards merge to the same page, and the page
is a self-contained folder (relative links, no network)."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leafscope.data.spec import DataSpec
from leafscope.errors import InputError
from leafscope.execution import RunOptions, make_job, merge, run
from leafscope.information import DataInformation
from leafscope.tasks.explore import ExploreParams, round_to_8bit, walk_positions

pytest.importorskip("pyarrow")
ROOT = Path(__file__).resolve().parents[3]
OPTIONS = RunOptions(device="cpu", progress=False, threads=1)


def decode(b64: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(b64))))


def _run(files, kind, params=None, points=8, out=None, part=(1, 1)):
    path, model = files[kind]
    job = make_job(
        "explore",
        params or ExploreParams(),
        model=model,
        data=DataSpec(name=str(path), split="test"),
        points=points,
    )
    return run(job, RunOptions(device="cpu", progress=False, threads=1, part=part), out=out)


@pytest.fixture(scope="module")
def grey(explore_files):
    return _run(explore_files, "grey", ExploreParams(directions=3, steps=3, radius=2.0))


def test_rows_are_the_spectrum_of_G(grey):
    rows, context = grey.rows, grey.context
    model = context.model()
    x, y = context.data().take([int(i) for i in rows["index"]])
    G = DataInformation(model, x, dtype=torch.float64)
    np.testing.assert_allclose(rows["eigenvalues"], G.eigenvalues().numpy(), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(rows["trace"], G.trace().numpy(), rtol=1e-10)
    np.testing.assert_allclose(rows["lambda1"], G.eigenvalues()[:, 0].numpy(), rtol=1e-8)
    assert np.array_equal(rows["label"], y.numpy())
    assert np.array_equal(rows["predicted"], G.probs.argmax(1).numpy())
    # trace = sum of the eigenvalues (G has rank <= C - 1)
    np.testing.assert_allclose(rows["eigenvalues"].sum(1), rows["trace"], rtol=1e-8)


def test_walk_images_follow_signed_eigenvectors_and_carry_the_models_probabilities(grey):
    """Frame k of leaf j is round8(clip(x + t_k v_j)) with v_j the unit eigenvector of G whose
    sign raises the predicted class (checked against autograd's gradient of log p), and its
    probabilities are the model's on the decoded PNG itself."""
    rows, context = grey.rows, grey.context
    model = context.model()
    t = walk_positions(2.0, 3)
    x, _ = context.data().take([int(i) for i in rows["index"]])
    G = DataInformation(model, x, dtype=torch.float64)
    _, vectors = G.eigh()
    for i in range(len(rows["unit"])):
        view = json.loads(rows["view"][i])
        xi = x[i : i + 1].double().requires_grad_(True)
        logp = torch.log_softmax(copy.deepcopy(model).double()(xi), 1)[0, int(rows["predicted"][i])]
        (grad,) = torch.autograd.grad(logp, xi)
        leaves = [d for d in view["directions"] if d["kind"] == "leaf"]
        kernels = [d for d in view["directions"] if d["kind"] == "kernel"]
        assert len(leaves) == 3 and len(kernels) == 1
        for j, d in enumerate(leaves):
            v = vectors[i, j]
            v = v if float(grad.reshape(-1) @ v) >= 0 else -v
            assert d["eigenvalue"] == pytest.approx(float(rows["eigenvalues"][i, j]), rel=1e-9)
            assert d["vgv"] == pytest.approx(d["eigenvalue"], rel=1e-6)
            for k, frame in enumerate(d["frames"]):
                shown = decode(frame)
                expected = round_to_8bit(x[i].double() + t[k] * v.reshape(1, 8, 8))[0]
                diff = np.abs(shown.astype(int) - np.round(expected.numpy() * 255).astype(int))
                assert diff.max() <= 1 and (diff == 0).mean() > 0.98
        assert decode(leaves[0]["frames"][3]).tolist() == decode(view["image"]).tolist()
        # the kernel direction: unseen by G to first order
        assert kernels[0]["vgv"] < 1e-9 * float(rows["lambda1"][i])
        for d in view["directions"]:
            frames = np.stack([decode(f) for f in d["frames"]]).astype(np.float32) / 255
            with torch.no_grad():
                probs = torch.softmax(model(torch.from_numpy(frames)[:, None]).double(), 1)
            np.testing.assert_allclose(d["probs"], probs.numpy(), atol=6e-5)
            change = 0.5 * np.abs(probs.numpy() - probs.numpy()[3]).sum(1).max()
            assert d["change"] == pytest.approx(change, abs=1e-4)
    # what the model notices moves its probabilities more than what it ignores
    assert np.median(rows["leaf_change"]) > 3 * np.median(rows["kernel_change"])


def test_summary_and_terminal_lines(grey):
    summary = grey.payload["summary"]
    assert summary["points"] == 8 and summary["page"] == "index.html"
    assert summary["median_leaf_change"] == pytest.approx(np.median(grey.rows["leaf_change"]))
    lines = grey.task.terminal_lines(summary)
    assert "index.html" in lines[-1] and "top eigen-direction" in lines[1]


def test_rgb_maps_are_per_channel_and_frames_are_rgb(explore_files):
    result = _run(explore_files, "rgb", ExploreParams(directions=2, steps=2), points=4)
    view = json.loads(result.rows["view"][0])
    assert [d["kind"] for d in view["directions"]] == ["leaf", "leaf", "kernel"]
    assert decode(view["image"]).shape == (8, 8, 3)
    direction = view["directions"][0]
    assert decode(direction["map"]).shape == (8, 3 * 8 + 2)  # palette: R, G, B panels
    frames = np.stack([decode(f) for f in direction["frames"]]).astype(np.float32) / 255
    model = result.context.model()
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(frames).permute(0, 3, 1, 2)).double(), 1)
    np.testing.assert_allclose(direction["probs"], probs.numpy(), atol=6e-5)


def test_vectors_walk_unclipped_and_score_the_stored_values(explore_files):
    result = _run(explore_files, "vector", ExploreParams(steps=2, radius=3.0), points=6)
    model = result.context.model()
    x, _ = result.context.data().take([int(i) for i in result.rows["index"]])
    for i in range(len(result.rows["unit"])):
        view = json.loads(result.rows["view"][i])
        assert "image" not in view and np.allclose(view["values"], x[i].numpy())
        assert len([d for d in view["directions"] if d["kind"] == "leaf"]) == 2  # C - 1
        for d in view["directions"]:
            frames = torch.tensor(d["frames"], dtype=torch.float32)
            assert torch.equal(frames[2], x[i])  # t = 0: the point itself, exactly
            v = torch.tensor(d["values"], dtype=torch.float32)
            assert torch.allclose(frames[-1] - frames[0], 6.0 * v, atol=1e-3)  # no clipping
            with torch.no_grad():
                probs = torch.softmax(model(frames).double(), 1)
            np.testing.assert_allclose(d["probs"], probs.numpy(), atol=6e-5)


def test_bad_parameters_name_the_field_and_the_flag(explore_files, tmp_path):
    with pytest.raises(InputError, match="directions must be >= 1"):
        ExploreParams(directions=0)
    with pytest.raises(InputError, match="radius must be a finite number > 0"):
        ExploreParams(radius=-1.0)
    path, spec = explore_files["grey"]
    done = subprocess.run(
        [sys.executable, "-m", "leafscope.cli.main", "explore", "--model", spec.factory,
         "--model-args", spec.factory_kwargs, "--weights", spec.weights, "--dataset", str(path),
         "--radius", "0", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "--radius must be a finite number > 0" in done.stderr


def _page_files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (p.name == "index.html" or "_files" in p.parts)
    }


def test_shards_merge_into_the_same_rows_and_page(explore_files, tmp_path):
    params = ExploreParams(directions=2, steps=2)
    whole = tmp_path / "whole"
    one = _run(explore_files, "grey", params, points=12, out=whole)
    sliced = tmp_path / "sliced"
    path, model = explore_files["grey"]
    job = make_job("explore", params, model=model, data=DataSpec(name=str(path), split="test"),
                   points=12, shard_size=5)  # fmt: skip
    for part in ((1, 2), (2, 2)):
        first = run(job, RunOptions(device="cpu", progress=False, threads=1, part=part), out=sliced)
    assert first.complete  # the second slice completes the job and writes the page
    merged = merge(sliced)
    assert merged["summary"] == one.payload["summary"]
    assert merged["files"][0] == "index.html"
    # the same numbers up to the float rounding of other batches; the same images
    assert np.array_equal(first.rows["index"], one.rows["index"])
    for key in ("eigenvalues", "trace", "leaf_change", "kernel_change"):
        np.testing.assert_allclose(first.rows[key], one.rows[key], rtol=1e-6, atol=1e-12)
    for a, b in zip(first.rows["view"], one.rows["view"], strict=True):
        a, b = json.loads(a), json.loads(b)
        assert a["image"] == b["image"]
        for da, db in zip(a["directions"], b["directions"], strict=True):
            assert da["frames"] == db["frames"] and da["map"] == db["map"]
            np.testing.assert_allclose(da["probs"], db["probs"], atol=2e-4)
    assert (whole / "index.html").read_text() == (sliced / "index.html").read_text()
    assert set(_page_files(whole)) == set(_page_files(sliced))


def test_the_page_is_a_self_contained_folder(explore_files, tmp_path):
    out = tmp_path / "page"
    result = _run(explore_files, "grey", ExploreParams(steps=2), points=10, out=out)
    assert result.payload["files"][0] == "index.html"
    html = (out / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert links and all(not re.match(r"^[a-z]+:", link) or link == "data:," for link in links)
    for link in links:
        if link != "data:,":
            assert (out / link).is_file(), link
    for path in [out / "index.html", *(out / "_files").rglob("*")]:
        if path.is_file():
            text = path.read_text()
            urls = set(re.findall(r"(?:https?|ftp|wss?)://[^\s\"')]+", text))
            assert urls <= {"http://www.w3.org/2000/svg"}, (path, urls)  # an XML namespace only
    data = out / "_files" / "explorer" / "data"
    points = (data / "points.js").read_text()
    gallery = json.loads(points[points.index(",points:") + 8 : points.rindex(",details:")])
    assert sorted(p["index"] for p in gallery) == sorted(result.rows["index"].tolist())
    # the walk images are 8-bit PNGs: every frame decodes to (8, 8) uint8
    detail = (data / "detail-0000.js").read_text()
    chunk = json.loads(detail[detail.index("(") + 1 : detail.rindex(")")])
    frames = [f for p in chunk.values() for d in p["directions"] for f in d["frames"]]
    assert len(frames) == 10 * 4 * 5 and all(decode(f).shape == (8, 8) for f in frames[:20])
    # the rows stay readable as Parquet shards beside the page
    pandas = pytest.importorskip("pandas")
    rows = pandas.read_parquet(sorted(out.glob("shard-*.parquet")))
    assert len(rows) == 10


def test_a_rerun_into_a_copied_folder_is_refused_not_mixed(explore_files, tmp_path):
    out = tmp_path / "page"
    _run(explore_files, "grey", ExploreParams(steps=2), points=6, out=out)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(InputError, match="other settings"):
        _run(explore_files, "grey", ExploreParams(steps=3), points=6, out=copy)
