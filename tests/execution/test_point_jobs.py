"""The per-point tasks ``denoise``, ``involutivity`` and the walks of ``generate`` on the runner:
Dask workers give the in-process rows, ``--shard 1/2`` + ``--shard 2/2`` + ``leafscope merge``
give the rows and summary of one run, a crashed run resumes to the same rows, and the rows give
the library's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.cli.main import main
from leafscope.data.spec import DataSpec
from leafscope.errors import InputError
from leafscope.execution import ResultFolder, merge
from leafscope.execution.runner import RunOptions, make_job, run
from leafscope.models.spec import ModelSpec
from leafscope.tasks.denoise import DenoiseParams
from leafscope.tasks.generate import GenerateParams
from leafscope.tasks.involutivity import InvolutivityParams

pq = pytest.importorskip("pyarrow.parquet")

FACTORY = "leafscope.testing:tiny_cnn"
FACTORY_ARGS = '{"activation": "tanh", "n_classes": 10}'
MODEL = ["--model", FACTORY, "--model-args", FACTORY_ARGS, "--device", "cpu"]
DATA = ["--dataset", "digits", "--resize", "8,8"]
ARGS = {
    "involutivity": ["--points", "5"],
    "denoise": ["--points", "5", "--pool", "30", "--tune-points", "4", "--leaf-steps", "3",
                "--sigma", "0.2,0.4"],
    "generate": ["--split", "train", "--class", "CLASS", "--points", "5", "--steps", "4",
                 "--pool", "60"],
}  # fmt: skip
KINDS = ["involutivity", "denoise", "generate"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def label() -> int:
    """A class the untrained model predicts on some digits of that class (for generate)."""
    from leafscope.data import load_images
    from leafscope.testing import tiny_cnn

    data = load_images("digits", "train", limit=60, resize="8,8")
    predicted = tiny_cnn(10, "tanh")(data.images).argmax(1)
    hits = predicted[predicted == data.labels]
    if not len(hits):
        pytest.skip("the untrained model classifies no digit correctly")
    return int(hits.mode().values)


def argv(kind: str, label: int, *extra: str) -> list[str]:
    args = [str(label) if a == "CLASS" else a for a in ARGS[kind]]
    return [kind, *MODEL, *DATA, *args, "--no-progress", *extra]


def job_of(kind: str, label: int, shard_size: int = 2):
    """The job the command line of ``kind`` describes, built through the library."""
    model = ModelSpec(factory=FACTORY, factory_kwargs=FACTORY_ARGS)
    data = DataSpec(name="digits", resize="8,8")
    if kind == "involutivity":
        params = InvolutivityParams()
    elif kind == "denoise":
        params = DenoiseParams(pool=30, tune_points=4, leaf_steps=3, sigma=(0.2, 0.4))
    else:
        params = GenerateParams(label=label, points=5, steps=4, pool=60)
        data = data.replace(split="train")
    points = 5 if kind != "generate" else None
    return make_job(kind, params, model=model, data=data, points=points, shard_size=shard_size)


def folder_rows(path: Path) -> dict[str, np.ndarray]:
    folder = ResultFolder(path)
    settings = folder.read_settings()["settings"]
    return folder.read_columns(settings["num_shards"])


def assert_rows_equal(a: dict, b: dict, tol: float = 1e-10) -> None:
    assert a.keys() == b.keys() and len(a["unit"]) == len(b["unit"])
    for key in set(a) - {"seconds"}:  # wall-clock time of a point (involutivity)
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, rtol=0, atol=tol, err_msg=key)
        else:
            assert np.array_equal(x, y), key


def without_seconds(summary: dict) -> dict:
    summary = json.loads(json.dumps(summary))
    summary.pop("seconds", None)
    for record in (summary, summary.get("summary", {})):
        if isinstance(record, dict):
            record.pop("seconds", None)
    return summary


@pytest.mark.parametrize("kind", KINDS)
def test_dask_workers_give_the_in_process_rows(kind, label):
    pytest.importorskip("distributed")
    from leafscope.execution import DaskExecutor

    job = job_of(kind, label)
    options = RunOptions(device="cpu", progress=False)
    here = run(job, options)
    with DaskExecutor(2, processes=False) as dask:
        there = run(job, options, executor=dask)
    assert here.settings["num_shards"] == 3 and here.complete and there.complete
    assert_rows_equal(here.rows, there.rows)
    assert np.array_equal(np.unique(here.rows["unit"]), np.arange(5))
    assert without_seconds(here.payload["summary"]) == without_seconds(there.payload["summary"])


@pytest.mark.parametrize("kind", KINDS)
def test_slices_merge_to_the_unsliced_folder(kind, label, tmp_path, capsys):
    whole, sliced = tmp_path / "whole", tmp_path / "sliced"
    assert main([*argv(kind, label, "--shard-size", "2"), "--out", str(whole)]) == 0
    for part in ("1/2", "2/2"):
        extra = ["--shard-size", "2", "--shard", part, "--out", str(sliced)]
        assert main(argv(kind, label, *extra)) == 0
        done = ResultFolder(sliced).finished()
        assert (set() < done < {0, 1, 2}) if part == "1/2" else done == {0, 1, 2}
        if part == "1/2":  # incomplete: no summary yet (the last slice or merge writes it)
            assert not (sliced / "_summary.json").exists()
            assert "leafscope merge" in capsys.readouterr().out
    (sliced / "_summary.json").unlink()
    assert main(["merge", str(sliced)]) == 0
    assert_rows_equal(folder_rows(sliced), folder_rows(whole), tol=0)
    merged = json.loads((sliced / "_summary.json").read_text())
    one = json.loads((whole / "_summary.json").read_text())
    assert merged["task"] == kind and merged["num_shards"] == 3
    assert without_seconds(merged["summary"]) == without_seconds(one["summary"])
    assert merged.get("files") == one.get("files")
    if kind == "generate":  # merge wrote the grid and arrays beside the rows
        with (
            np.load(sliced / "_files" / "generated.npz") as a,
            np.load(whole / "_files" / "generated.npz") as b,
        ):
            assert np.array_equal(a["images"], b["images"]) and a["images"].shape == (5, 1, 8, 8)
        assert (sliced / "_files" / "grid.png").stat().st_size > 0
    if kind == "denoise":
        assert (sliced / "_files" / "denoise_strips.png").stat().st_size > 0


@pytest.mark.parametrize("kind", KINDS)
def test_resume_after_a_crash_gives_the_same_rows(kind, label, tmp_path, capsys):
    folder = tmp_path / "d"
    full = [*argv(kind, label, "--shard-size", "2"), "--out", str(folder)]
    assert main(full) == 0
    before = folder_rows(folder)
    # a run killed after its first shard: the other shards and the summary never got written
    for name in ("shard-00001.parquet", "shard-00002.parquet", "_summary.json"):
        (folder / name).unlink()
    capsys.readouterr()
    assert main(full) == 2  # a finished shard is there: --resume (or another folder) needed
    assert "resume it" in capsys.readouterr().err
    assert main([*full, "--resume"]) == 0
    assert_rows_equal(folder_rows(folder), before, tol=0)
    assert (folder / "_summary.json").is_file()


def test_denoise_rows_give_the_library_table(label):
    from leafscope.applications import denoise_benchmark
    from leafscope.data import load_images
    from leafscope.testing import tiny_cnn

    job = job_of("denoise", label)
    job = make_job("denoise", job.params, model=job.models["model"], data=job.data["data"],
                   indices=range(5), shard_size=2)  # fmt: skip
    result = run(job, RunOptions(device="cpu", progress=False))
    got, rows = result.payload["summary"], result.rows
    model = tiny_cnn(10, "tanh").eval()
    train = load_images("digits", "train", limit=30, resize="8,8")
    test = load_images("digits", "test", limit=5, resize="8,8")
    want = denoise_benchmark(model, train.images, test.images, test.labels, sigmas=(0.2, 0.4),
                             tune_points=4, leaf_steps=3).to_json()  # fmt: skip
    assert [r["method"] for r in got["results"]] == [r["method"] for r in want["results"]]
    for a, b in zip(got["results"], want["results"], strict=True):
        assert a["params"] == b["params"] and a["points"] == b["points"] == 5
        for key in ("psnr", "psnr_std", "ssim", "ssim_std", "accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["method"], key)
    for key, scores in want["settings"]["tune_scores"].items():
        assert got["settings"]["tune_scores"][key] == pytest.approx(scores, rel=1e-9)
    # per image: 2 sigmas x 9 methods rows, image-major
    assert len(rows["unit"]) == 5 * 2 * 9 and np.all(np.diff(rows["unit"]) >= 0)
    assert np.array_equal(np.unique(rows["index"]), np.arange(5))


def test_involutivity_rows_give_the_library_ranks(label):
    from leafscope.foliation import involutivity
    from leafscope.tasks.involutivity import noise_points
    from leafscope.testing import tiny_cnn

    result = run(job_of("involutivity", label), RunOptions(device="cpu", progress=False))
    rows, summary = result.rows, result.payload["summary"]
    x = noise_points(0, (1, 8, 8), tuple(range(5)))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(x, torch.rand((5, 1, 8, 8), generator=gen))  # the published draw
    want = involutivity(tiny_cnn(10, "tanh").eval(), x, rtol=1e-10)
    assert rows["dim_distribution"].tolist() == want.dim_distribution
    assert rows["dim_with_brackets"].tolist() == want.dim_with_brackets
    assert summary["rank_by_rtol"] == want.rank_by_rtol
    assert summary["ceiling"] == want.ceiling == 45
    np.testing.assert_allclose(rows["singular_values"], want.singular_values.numpy(),
                               rtol=1e-9, atol=1e-12)  # fmt: skip
    assert rows["index"].tolist() == list(range(5))  # noise: the draw number of each point
    assert np.isnan(rows["fisher_singular_values"]).all()  # no Fisher test asked for


def test_involutivity_on_data_points_and_the_fisher_test(label):
    from leafscope.data import load_images
    from leafscope.foliation import fisher_involutivity, involutivity
    from leafscope.testing import tiny_cnn

    base = job_of("involutivity", label)
    params = InvolutivityParams(inputs="data", fisher_points=2,
                                fisher_parameters=("6.weight", "6.bias"))  # fmt: skip
    job = make_job("involutivity", params, model=base.models["model"], data=base.data["data"],
                   indices=[3, 1, 4], shard_size=2)  # fmt: skip
    result = run(job, RunOptions(device="cpu", progress=False))
    rows, summary = result.rows, result.payload["summary"]
    data = load_images("digits", "test", resize="8,8")
    x = data.images[torch.tensor([3, 1, 4])]
    model = tiny_cnn(10, "tanh").eval()
    want = involutivity(model, x, rtol=1e-10)
    assert (
        rows["index"].tolist() == [3, 1, 4]
        and rows["label"].tolist() == data.labels[torch.tensor([3, 1, 4])].tolist()
    )
    np.testing.assert_allclose(rows["singular_values"], want.singular_values.numpy(),
                               rtol=1e-9, atol=1e-12)  # fmt: skip
    fisher = fisher_involutivity(model, x[:2], rtol=1e-10, parameters=["6.weight", "6.bias"])
    np.testing.assert_allclose(rows["fisher_singular_values"][:2],
                               fisher.singular_values.numpy(), rtol=1e-9, atol=1e-12)  # fmt: skip
    assert np.isnan(rows["fisher_singular_values"][2]).all()  # only the first 2 points
    assert summary["fisher"]["space"] == "parameter"
    assert summary["fisher"]["mean_dim_with_brackets"] == fisher.mean_dim_with_brackets


def test_a_walk_does_not_depend_on_its_shard(label):
    options = RunOptions(device="cpu", progress=False)
    one = run(job_of("generate", label, shard_size=1), options).rows
    five = run(job_of("generate", label, shard_size=5), options).rows
    assert_rows_equal(one, five, tol=1e-5)
    assert (one["predicted"] == label).all()  # steps that change the class are undone
    assert np.all((one["image"] >= 0) & (one["image"] <= 1))
    assert one["walk"].tolist() == list(range(5))


def test_merge_refuses_a_folder_without_a_job(tmp_path, capsys):
    with pytest.raises(InputError, match="is not a result folder"):
        merge(tmp_path)
    assert main(["merge", str(tmp_path)]) == 2
    assert "no _settings.json" in capsys.readouterr().err


def test_unknown_kind_and_bad_flags_are_refused(label, capsys):
    with pytest.raises(InputError, match="unknown task 'nope'"):
        make_job("nope")
    assert main(argv("involutivity", label, "--shard", "1/2")) == 2
    assert "--shard and --resume need --out DIR" in capsys.readouterr().err
    assert main(argv("denoise", label, "--workers", "2")) == 2
    assert "--workers 2 needs --executor dask" in capsys.readouterr().err
    assert main(argv("denoise", label, "--methods", "noisy,median")) == 2
    assert "methods: unknown ['median']" in capsys.readouterr().err
    assert main(argv("denoise", label, "--sigma", "0.1,x")) == 2
    assert "--sigma must be a number" in capsys.readouterr().err
    assert main(argv("denoise", label, "--pool", "4")) == 2
    assert "--pool must exceed tune_points" in capsys.readouterr().err
    assert main(argv("involutivity", label, "--inputs", "cats")) == 2
    assert "--inputs must be one of noise, data" in capsys.readouterr().err
