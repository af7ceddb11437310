"""The per-point jobs (``denoise``, ``involutivity``, ``generate``) on the executor layer: Dask
workers give the in-process rows, slices merge to the whole, a crashed run resumes to the same
rows, and the rows give the library's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.cli.main import build_parser, main
from leafscope.errors import InputError
from leafscope.execution import (
    InProcessExecutor,
    PointJob,
    ResultFolder,
    merge_results,
    read_rows,
    run_point_job,
)

pq = pytest.importorskip("pyarrow.parquet")

MODEL = ["--model", "leafscope.testing:tiny_cnn", "--model-args",
         '{"n_classes": 10, "activation": "tanh"}', "--device", "cpu"]  # fmt: skip
DATA = ["--dataset", "digits", "--resize", "8,8"]
ARGS = {
    "involutivity": ["--points", "5", "--json", "unused.json"],
    "denoise": [
        "--points",
        "5",
        "--pool",
        "30",
        "--tune-points",
        "4",
        "--leaf-steps",
        "3",
        "--sigma",
        "0.2,0.4",
    ],  # fmt: skip
    "generate": ["--class", "CLASS", "--n", "5", "--steps", "4", "--pool", "60", "--out", "G"],
}


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


def argv(kind: str, label: int, tmp: Path, *extra: str) -> list[str]:
    fill = {"CLASS": str(label), "G": str(tmp / "g"), "unused.json": str(tmp / "unused.json")}
    args = [fill.get(a, a) for a in ARGS[kind]]
    return [kind, *MODEL, *DATA, *args, "--no-progress", *extra]


def job_of(kind: str, label: int, tmp: Path, *extra: str) -> PointJob:
    from importlib import import_module

    args = build_parser().parse_args(argv(kind, label, tmp, *extra))
    made = import_module(f"leafscope.cli.{kind}").point_job(args, torch.device("cpu"))
    return made[0] if isinstance(made, tuple) else made


def assert_rows_equal(a: dict, b: dict, tol: float = 1e-10) -> None:
    assert a.keys() == b.keys() and len(a["index"]) == len(b["index"])
    for key in set(a) - {"seconds"}:  # wall-clock time of a shard (involutivity)
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, rtol=0, atol=tol, err_msg=key)
        else:
            assert np.array_equal(x, y), key


@pytest.mark.parametrize("kind", ["involutivity", "denoise", "generate"])
def test_dask_workers_give_the_in_process_rows(kind, label, tmp_path):
    pytest.importorskip("distributed")
    from leafscope.execution import DaskExecutor

    job = job_of(kind, label, tmp_path, "--shard-size", "2")
    here = run_point_job(job, InProcessExecutor())
    with DaskExecutor(2, processes=False) as dask:
        there = run_point_job(job, dask)
    assert len(job.shards) == 3 and here.complete and there.complete
    assert_rows_equal(here.columns, there.columns)
    assert np.array_equal(np.unique(here.columns["index"]), np.arange(5))
    if kind == "involutivity":  # summed compute time differs; the ranks do not
        here.summary["summary"].pop("seconds"), there.summary["summary"].pop("seconds")
    assert json.dumps(here.summary, sort_keys=True) == json.dumps(there.summary, sort_keys=True)


@pytest.mark.parametrize("kind", ["involutivity", "denoise", "generate"])
def test_slices_merge_to_the_unsliced_folder(kind, label, tmp_path):
    def out_flags(name: str) -> list[str]:
        return ["--out", str(tmp_path / name)] if kind != "generate" else []

    def folder(name: str) -> Path:
        return tmp_path / name if kind != "generate" else tmp_path / "g" / "points"

    assert main([*argv(kind, label, tmp_path, "--shard-size", "2"), *out_flags("whole")]) == 0
    whole = read_rows(folder("whole"))
    whole_summary = json.loads((folder("whole") / "_summary.json").read_text())
    if kind == "generate":  # the slices go to the same OUT/points: move the whole run aside
        (tmp_path / "g").rename(tmp_path / "g-whole")
    sliced = folder("sliced")
    for part in ("0/2", "1/2"):
        extra = ["--shard-size", "2", "--shard", part]
        assert main([*argv(kind, label, tmp_path, *extra), *out_flags("sliced")]) == 0
        assert ResultFolder(sliced).finished() == ({0} if part == "0/2" else {0, 1, 2})
        if part == "0/2":  # incomplete: no summary yet (the last slice or merge writes it)
            assert not (sliced / "_summary.json").exists()
    (sliced / "_summary.json").unlink()
    merged_dir = tmp_path / "g" if kind == "generate" else sliced  # merge takes OUT too
    assert main(["merge", str(merged_dir)]) == 0
    assert_rows_equal(read_rows(sliced), whole, tol=0)
    merged = json.loads((sliced / "_summary.json").read_text())
    settings = ResultFolder(sliced).read_settings()["settings"]
    assert merged["kind"] == settings["command"] == kind
    for record in (merged, whole_summary):
        record["summary"].pop("seconds", None)
    assert merged == whole_summary
    if kind == "generate":  # merge wrote the grid and arrays beside the rows
        with (
            np.load(tmp_path / "g" / "generated.npz") as a,
            np.load(tmp_path / "g-whole" / "generated.npz") as b,
        ):
            assert np.array_equal(a["images"], b["images"])
        assert (tmp_path / "g" / "grid.png").stat().st_size > 0


@pytest.mark.parametrize("kind", ["involutivity", "denoise", "generate"])
def test_resume_after_a_crash_gives_the_same_rows(kind, label, tmp_path):
    out = [] if kind == "generate" else ["--out", str(tmp_path / "d")]
    folder = tmp_path / "g" / "points" if kind == "generate" else tmp_path / "d"
    full = [*argv(kind, label, tmp_path, "--shard-size", "2"), *out]
    assert main(full) == 0
    before = read_rows(folder)
    # a run killed after its first shard: the other shards and the summary never got written
    for name in ("shard-00001.parquet", "shard-00002.parquet", "_summary.json"):
        (folder / name).unlink()
    with pytest.raises(InputError, match="misses 2 of 3 shards"):
        read_rows(folder)
    if kind != "generate":  # (generate without --resume starts over, as it always did)
        assert main(full) == 2  # finished shard present: --resume needed
    assert main([*full, "--resume"]) == 0
    assert_rows_equal(read_rows(folder), before, tol=0)
    assert (folder / "_summary.json").is_file()


def test_denoise_rows_give_the_library_table(label, tmp_path):
    from leafscope.applications import denoise_benchmark
    from leafscope.data import load_images
    from leafscope.execution.point_kinds import denoise_result
    from leafscope.testing import tiny_cnn

    job = job_of("denoise", label, tmp_path, "--shard-size", "2")
    rows = run_point_job(job, InProcessExecutor()).columns
    got = denoise_result(job.settings(), job.info, rows).to_json()
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
    assert got["settings"]["tune_scores"] == want["settings"]["tune_scores"]
    # per image: 2 sigmas x 9 methods rows, image-major
    assert len(rows["index"]) == 5 * 2 * 9 and np.all(np.diff(rows["index"]) >= 0)


def test_involutivity_rows_give_the_library_ranks(label, tmp_path):
    from leafscope.execution.point_kinds import involutivity_result_of, noise_points
    from leafscope.foliation import involutivity
    from leafscope.testing import tiny_cnn

    job = job_of("involutivity", label, tmp_path, "--shard-size", "2")
    rows = run_point_job(job, InProcessExecutor()).columns
    got = involutivity_result_of(job.settings(), job.info, rows)
    x = noise_points(0, (1, 8, 8), tuple(range(5)))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(x, torch.rand((5, 1, 8, 8), generator=gen))  # the published draw
    want = involutivity(tiny_cnn(10, "tanh").eval(), x, rtol=1e-10)
    assert got.dim_distribution == want.dim_distribution
    assert got.dim_with_brackets == want.dim_with_brackets
    assert got.rank_by_rtol == want.rank_by_rtol and got.ceiling == want.ceiling == 45
    torch.testing.assert_close(got.singular_values, want.singular_values, rtol=1e-9, atol=1e-12)


def test_a_walk_does_not_depend_on_its_shard(label, tmp_path):
    one = run_point_job(job_of("generate", label, tmp_path, "--shard-size", "1"),
                        InProcessExecutor()).columns  # fmt: skip
    five = run_point_job(job_of("generate", label, tmp_path, "--shard-size", "5"),
                         InProcessExecutor()).columns  # fmt: skip
    assert_rows_equal(one, five, tol=1e-5)
    assert (one["predicted"] == label).all()  # steps that change the class are undone
    assert np.all((one["image"] >= 0) & (one["image"] <= 1))


def test_merge_refuses_a_folder_without_a_job(tmp_path, capsys):
    with pytest.raises(InputError, match="nor a per-point one"):
        merge_results(tmp_path)
    assert main(["merge", str(tmp_path)]) == 2
    assert "no _settings.json" in capsys.readouterr().err


def test_unknown_kind_and_bad_flags_are_refused(label, tmp_path, capsys):
    with pytest.raises(InputError, match="unknown job kind 'nope'"):
        PointJob("nope", 3)
    assert main(argv("involutivity", label, tmp_path, "--shard", "0/2")) == 2
    assert "--shard and --resume need --out DIR" in capsys.readouterr().err
    assert main(argv("denoise", label, tmp_path, "--workers", "2")) == 2
    assert "--workers 2 needs --executor dask" in capsys.readouterr().err
