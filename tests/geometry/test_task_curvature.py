"""The ``curvature`` task: in process through ``run(job)``, sliced + merged, and the MNIST command
of the issue's bar (JSON per point, K = 1/4 at every full-rank point)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leafscope.cli.main import main
from leafscope.data import load_images
from leafscope.data.spec import DataSpec
from leafscope.execution.runner import make_job, run
from leafscope.geometry import leaf_geometry
from leafscope.models import build_model
from leafscope.models.spec import ModelSpec
from leafscope.tasks.curvature import SEED_STRIDE, CurvatureParams
from leafscope.testing import shared_data_dir, tiny_cnn
from leafscope.training import save_checkpoint

pytest.importorskip("pyarrow.parquet")
needs_mnist = pytest.mark.skipif(shared_data_dir() is None, reason="shared MNIST not present")

FACTORY = "leafscope.testing:tiny_cnn"
FACTORY_ARGS = '{"activation": "gelu", "n_classes": 6}'
COMMON = ["--model", FACTORY, "--model-args", FACTORY_ARGS, "--dataset", "digits", "--resize",
          "8,8", "--points", "5", "--planes", "3", "--steps", "6", "--count", "2",
          "--device", "cpu", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _job(shard_size: int = 1000):
    params = CurvatureParams(planes=3, steps=6, count=2, seed=4)
    return make_job(
        "curvature",
        params,
        model=ModelSpec(factory=FACTORY, factory_kwargs=FACTORY_ARGS),
        data=DataSpec(name="digits", resize="8,8"),
        points=5,
        shard_size=shard_size,
    )


def test_rows_are_the_library_values_and_a_quarter_at_full_rank():
    result = run(_job())
    rows = result.rows
    assert result.complete and len(rows["unit"]) == 5
    full = rows["full_rank"]
    assert full.all()
    k = rows["transverse_sectional_curvature"]
    assert k.shape == (5, 3)
    assert np.abs(k - 0.25).max() < 1e-9
    assert result.payload["summary"]["full_rank_points"] == 5
    # the same numbers from the library on the same points and seeds
    data = load_images("digits", "test", resize="8,8")
    idx = [int(i) for i in rows["index"]]
    model = tiny_cnn(activation="gelu", n_classes=6)
    geo = leaf_geometry(
        model, data.images[idx], planes=3, normals=3, count=2, steps=6,
        seeds=[4 * SEED_STRIDE + i for i in idx],
    )  # fmt: skip
    assert np.allclose(rows["integrability_norm"], geo.integrability.norm.numpy(), rtol=1e-9)
    assert np.allclose(
        rows["principal_curvatures"], geo.principal.values.reshape(5, -1).numpy(), rtol=1e-8
    )
    assert (rows["integrability_ratio"] > 1e-4).all()  # GeLU: brackets leave D


def test_a_torchscript_model_gives_the_rows_of_the_eager_one(tmp_path):
    """TorchScript keeps parameters that require grad: the task still gets plain values (it
    ended in "Can't call numpy() on Tensor that requires grad") and the eager model's numbers."""
    model = tiny_cnn(activation="gelu", n_classes=6)
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.ts"))
    eager = run(_job()).rows
    job = _job()
    scripted = run(
        make_job(
            "curvature",
            job.params,
            model=ModelSpec(checkpoint=str(tmp_path / "m.ts")),
            data=job.data["data"],
            points=5,
        )
    ).rows
    for name in ("transverse_sectional_curvature", "integrability_norm", "principal_curvatures"):
        assert np.allclose(scripted[name], eager[name], rtol=1e-7, atol=1e-12), name


def test_slices_and_merge_give_the_rows_of_one_run(tmp_path, capsys):
    one, sliced = tmp_path / "one", tmp_path / "sliced"
    assert main(["curvature", *COMMON, "--out", str(one)]) == 0
    for part in ("1/2", "2/2"):
        extra = ["--shard", part, "--shard-size", "2", "--out", str(sliced)]
        assert main(["curvature", *COMMON, *extra]) == 0
    assert main(["merge", str(sliced)]) == 0
    capsys.readouterr()
    a = json.loads((one / "_summary.json").read_text())["summary"]
    b = json.loads((sliced / "_summary.json").read_text())["summary"]
    assert a.keys() == b.keys()
    for key in a:  # batches of other sizes round differently: equal to 1e-9
        assert np.allclose(np.asarray(a[key], float), np.asarray(b[key], float), rtol=1e-9,
                           atol=1e-12), key  # fmt: skip


def test_bad_parameters_name_the_field():
    from leafscope.errors import InputError

    with pytest.raises(InputError, match="planes"):
        CurvatureParams(planes=0)
    with pytest.raises(InputError, match="dtype"):
        CurvatureParams(dtype="float16")


@needs_mnist
def test_mnist_command_of_the_bar(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model("lenet", activation="relu")
    ck = save_checkpoint(tmp_path / "epoch_0001.pt", model=model, epoch=1, step=1, history=[])
    out = tmp_path / "c.json"
    argv = ["curvature", "--checkpoint", str(ck), "--dataset", "mnist", "--split", "test",
            "--points", "8", "--dtype", "float64", "--json", str(out), "--steps", "8",
            "--data-dir", str(shared_data_dir()), "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "transverse K" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert len(doc["points"]) == 8
    full = [p for p in doc["points"] if p["full_rank"]]
    assert full, "no full-rank point"
    for point in full:
        assert point["rank"] == 9
        assert np.allclose(point["transverse_sectional_curvature"], 0.25, atol=1e-8)
        # ReLU/max-pool: inside a linear region D is involutive and the leaves are flat
        assert point["integrability_ratio"] < 1e-10
        assert np.abs(np.asarray(point["principal_curvatures"])).max() < 1e-10
