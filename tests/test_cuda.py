"""CUDA paths against the CPU (issue 13 item 6).

Tests marked ``cuda`` are skipped without a CUDA device (tests/conftest.py); ``pytest -m cuda``
runs them alone, as ``bench/gpu_check.sh`` does on a GPU machine. The others check, on any
machine, that asking for CUDA where there is none fails with one clear message.

On CUDA: the spectrum of G (``DataInformation``, ``point_spectra``, the matrix-free
``top_eigenvalues``) equals the CPU's in float64 to 1e-10·λ1; ``NNKGraph.fit`` gives the CPU's
weights, in-process and sharded; Dask GPU workers each use the GPU ``gpu_for_worker`` names; the
spectrum command gives the CPU's eigenvalues in-process and on Dask; every command of the
README's table runs with ``--device cuda`` and passes the README test's own checks.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from leafscope.cli.common import resolve_device
from leafscope.cli.main import main
from leafscope.errors import InputError, LeafscopeError
from leafscope.execution.executor import gpu_for_worker, worker_device
from leafscope.information import DataInformation, point_spectra, top_eigenvalues
from leafscope.models import build_model
from leafscope.nnk.graph import NNKGraph
from leafscope.testing import tiny_cnn, tiny_mlp
from leafscope.training import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64
# Without the Fashion-MNIST training file (bench/gpu_prepare.sh carries its test file only).
NO_FASHION_TRAIN = {
    "early-stopping": ["--dataset", "mnist"],
    "transfer": ["--datasets", "mnist,digits,noise"],
}


def _assert_spectra_equal(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    """Per point, every eigenvalue within ``tol·λ1`` (the scale of rounding in a spectrum) and
    each eigenvalue ≥ 1e-4·λ1 within ``tol`` relative."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    assert a.shape == b.shape
    top = b[:, :1].abs()
    assert float(((a - b).abs() / top).max()) <= tol
    big = b >= 1e-4 * top
    assert float(((a - b).abs()[big] / b[big]).max()) <= tol


def _mnist_available() -> bool:
    from leafscope.data import load_images

    try:
        load_images("mnist", "test", limit=1, download=False)
    except (LeafscopeError, OSError):
        return False
    return True


# ------------------------------------------------------------------ clear errors, any machine
def test_cuda_asked_without_cuda_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="asked for CUDA but none is available: use `device=cpu`"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InputError, match="unknown `device=gpu`"):
        resolve_device("gpu")
    from leafscope.cli.main import main

    assert main(["spectrum", "--checkpoint", "x.pt", "--device", "cuda"]) == 2
    err = capsys.readouterr().err  # the command shows its own flags
    assert "--device cuda asked for CUDA but none is available: use --device cpu" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without")
def test_benchmarks_refuse_cuda_without_it():
    script = ROOT / "bench" / "bench_brackets.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--device", "cuda"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--device cuda asked for CUDA but none is available: use --device cpu" in proc.stderr


# ------------------------------------------------------------------ spectra of G
@pytest.mark.cuda
@pytest.mark.parametrize("which", ["cnn", "mlp"])
def test_data_information_on_cuda_equals_cpu(which):
    torch.manual_seed(1)
    if which == "cnn":
        model, x = tiny_cnn(n_classes=5), torch.rand(6, 1, 8, 8)
    else:
        model, x = tiny_mlp(n_in=12, n_classes=6), torch.rand(6, 12)
    cpu = DataInformation(model, x, dtype=F64)
    gpu = DataInformation(model.cuda(), x.cuda(), dtype=F64)
    assert gpu.factor.device.type == "cuda"
    _assert_spectra_equal(gpu.eigenvalues(), cpu.eigenvalues())
    torch.testing.assert_close(gpu.probs.cpu(), cpu.probs, rtol=0, atol=1e-13)


@pytest.mark.cuda
def test_point_spectra_on_cuda_equal_cpu():
    torch.manual_seed(2)
    model, x = tiny_cnn(n_classes=4), torch.rand(10, 1, 8, 8)
    cpu = point_spectra(model, x, batch_size=4, device="cpu")
    gpu = point_spectra(model, x, batch_size=4, device="cuda")
    _assert_spectra_equal(gpu.eigenvalues, cpu.eigenvalues)
    assert (
        gpu.predicted.tolist() == cpu.predicted.tolist() and gpu.rank.tolist() == cpu.rank.tolist()
    )
    torch.testing.assert_close(gpu.trace.cpu(), cpu.trace, rtol=1e-10, atol=0)


@pytest.mark.cuda
def test_top_eigenvalues_on_cuda_equal_cpu_and_the_exact_factor():
    """k = C − 1 with a block as wide as C: the Krylov space is all of R^C after one iteration,
    so the Ritz values are the eigenvalues whatever the (device-dependent) random start."""
    torch.manual_seed(3)
    model, x = tiny_cnn(n_classes=5), torch.rand(4, 1, 8, 8)
    exact = DataInformation(model, x, dtype=F64).eigenvalues()
    cpu = top_eigenvalues(model, x, 4, dtype=F64, tol=1e-12)
    gpu = top_eigenvalues(model.cuda(), x.cuda(), 4, dtype=F64, tol=1e-12)
    assert gpu.eigenvalues.device.type == "cuda" and bool(gpu.converged.all())
    _assert_spectra_equal(gpu.eigenvalues, cpu.eigenvalues)
    _assert_spectra_equal(gpu.eigenvalues, exact)


# ------------------------------------------------------------------ NNK graphs
def _blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(c, 0.4, (80, 6)) for c in (0.0, 2.0, 4.0)]).astype(np.float32)


@pytest.mark.cuda
@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
def test_nnk_graph_fit_on_cuda_equals_cpu(kernel):
    X = _blobs()
    cpu = NNKGraph(k=12, kernel=kernel).fit(X)
    gpu = NNKGraph(k=12, kernel=kernel, device="cuda").fit(X)
    np.testing.assert_array_equal(gpu.knn_indices_, cpu.knn_indices_)  # faiss on the CPU
    np.testing.assert_allclose(gpu.knn_distances_, cpu.knn_distances_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gpu.theta_, cpu.theta_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(gpu.errors_, cpu.errors_, rtol=0, atol=1e-6)
    assert abs(gpu.weights_ - cpu.weights_).max() <= 1e-6
    assert (gpu.weights_ != gpu.weights_.T).nnz == 0 and gpu.weights_.min() >= 0


@pytest.mark.cuda
def test_nnk_sharded_solves_on_cuda_equal_in_process():
    X = _blobs()
    whole = NNKGraph(k=10, device="cuda", metric_batch_size=50).fit(X)
    with ThreadPoolExecutor(3) as pool:
        sharded = NNKGraph(k=10, device="cuda", metric_batch_size=50).fit(X, executor=pool)
    np.testing.assert_allclose(sharded.theta_, whole.theta_, rtol=0, atol=1e-12)
    assert abs(sharded.weights_ - whole.weights_).max() <= 1e-12


# ------------------------------------------------------------------ the NNK commands' solves
def _assert_json_close(a, b, tol: float = 1e-10, where: str = "") -> None:
    """Same structure; numbers within ``tol`` relative (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_json_close(a[key], b[key], tol, f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_json_close(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=tol, abs=tol, nan_ok=True), where
    else:
        assert a == b, where


def _double_cnn(seed: int = 0) -> torch.nn.Module:
    """tiny_cnn in float64: its CUDA features round to the CPU's float32 NNK inputs."""
    return tiny_cnn(seed=seed).double()


def _double_images(n: int = 40) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(4), dtype=F64)


@pytest.mark.cuda
def test_layer_geometry_solves_on_cuda_and_equals_cpu(monkeypatch):
    from leafscope.nnk.geometry import layer_geometry, mgm_summary

    seen = []
    fit = NNKGraph.fit
    monkeypatch.setattr(NNKGraph, "fit", lambda g, X, ex=None: seen.append(g.device) or fit(g, X))
    x = _double_images()
    feats = torch.rand(40, 12, generator=torch.Generator().manual_seed(5))
    _assert_json_close(
        mgm_summary(feats, 8, "cosine", device="cuda"), mgm_summary(feats, 8, "cosine")
    )
    kw = {"k": 8, "per_channel": True}
    cpu = layer_geometry(_double_cnn(), x, ["0", "4"], **kw)
    gpu = layer_geometry(_double_cnn().cuda(), x.cuda(), ["0", "4"], device="cuda", **kw)
    _assert_json_close(gpu, cpu)
    # mgm_summary twice, then per channel: 4 of layer "0" and 8 (one value each) of layer "4"
    assert seen == ["cuda", "cpu"] + ["cpu"] * 12 + ["cuda"] * 12


@pytest.mark.cuda
def test_geometric_stability_solves_on_cuda_and_equals_cpu(monkeypatch):
    from leafscope.nnk.stability import geometric_stability

    seen = []
    fit = NNKGraph.fit
    monkeypatch.setattr(NNKGraph, "fit", lambda g, X, ex=None: seen.append(g.device) or fit(g, X))
    x = _double_images()
    cpu = geometric_stability([_double_cnn(0), _double_cnn(1)], x, ["0", "4"], k=8)
    models = [_double_cnn(0).cuda(), _double_cnn(1).cuda()]
    gpu = geometric_stability(models, x.cuda(), ["0", "4"], k=8, device="cuda")
    for name in ("0", "4"):
        _assert_json_close(gpu[name].summary(), cpu[name].summary())
        _assert_json_close(gpu[name].mgm_means, cpu[name].mgm_means)
        assert [o.jaccard for o in gpu[name].nnk_overlap] == [
            o.jaccard for o in cpu[name].nnk_overlap
        ]
    assert seen == ["cpu"] * 4 + ["cuda"] * 4


@pytest.mark.cuda
def test_channel_loo_errors_solve_on_cuda_and_equal_cpu(monkeypatch):
    from leafscope.nnk.stopping import channel_loo_errors

    seen = []
    fit = NNKGraph.fit
    monkeypatch.setattr(NNKGraph, "fit", lambda g, X, ex=None: seen.append(g.device) or fit(g, X))
    x, y = _double_images(), torch.arange(40) % 3
    cpu = channel_loo_errors(_double_cnn(), x, y, "0", k=8)
    gpu = channel_loo_errors(_double_cnn().cuda(), x.cuda(), y, "0", k=8, device="cuda")
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-10)
    assert seen == ["cpu"] * 4 + ["cuda"] * 4  # one classifier per channel


@pytest.mark.cuda
def test_invariance_polytopes_solve_on_cuda_and_equal_cpu(monkeypatch):
    from leafscope.nnk import invariance

    seen = []
    kernels = invariance.local_kernels

    def spy(Z, centers, idx, *args):
        seen.append((Z.device.type, centers.device.type, idx.device.type))
        return kernels(Z, centers, idx, *args)

    monkeypatch.setattr(invariance, "local_kernels", spy)
    x = _double_images(12)
    cpu = invariance.rotation_invariance(_double_cnn(), x, ["0", "4"], (-30, 30, 90), batch_size=5)
    n = len(seen)
    gpu = invariance.rotation_invariance(
        _double_cnn().cuda(), x.cuda(), ["0", "4"], (-30, 30, 90), batch_size=5, device="cuda"
    )
    assert list(gpu) == list(cpu) == ["input", "0", "4"]
    for name in cpu:
        for field in ("diameter", "spread", "n_selected"):
            got, want = getattr(gpu[name], field), getattr(cpu[name], field)
            assert isinstance(got, np.ndarray) and got.shape == want.shape == (12,)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert set(seen[:n]) == {("cpu",) * 3} and set(seen[n:]) == {("cuda",) * 3}


@pytest.mark.cuda
def test_nnk_chunks_on_dask_gpu_workers_solve_on_each_workers_gpu(monkeypatch):
    pytest.importorskip("distributed")
    from leafscope.execution import DaskExecutor
    from leafscope.nnk import graph

    seen = []
    solve = graph._solve_batch
    monkeypatch.setattr(
        graph, "_solve_batch", lambda ref, *a: seen.append(ref.device) or solve(ref, *a)
    )
    X = _blobs()
    whole = NNKGraph(k=10, device="cuda", metric_batch_size=50).fit(X)
    gpus = torch.cuda.device_count()
    seen.clear()
    with DaskExecutor(device="cuda", processes=False) as ex:
        names = [w["name"] for w in ex.client.scheduler_info(n_workers=-1)["workers"].values()]
        sharded = NNKGraph(k=10, device="cuda", metric_batch_size=50).fit(X, executor=ex)
    own = {torch.device("cuda", gpu_for_worker(name, gpus)) for name in names}
    assert len(seen) == 5 and set(seen) <= own  # 240 nodes in chunks of 50, each on a worker's GPU
    np.testing.assert_allclose(sharded.theta_, whole.theta_, rtol=0, atol=1e-12)
    assert abs(sharded.weights_ - whole.weights_).max() <= 1e-12


# ------------------------------------------------------------------ executor
@pytest.mark.cuda
def test_worker_device_outside_a_worker_keeps_the_request():
    assert worker_device("cuda") == torch.device("cuda")
    assert worker_device("cuda:0") == torch.device("cuda", 0)
    assert worker_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.cuda
def test_dask_gpu_workers_each_use_the_gpu_gpu_for_worker_names():
    pytest.importorskip("distributed")
    from leafscope.execution import DaskExecutor

    gpus = torch.cuda.device_count()
    with DaskExecutor(device="cuda", processes=False) as ex:
        assert ex.workers == gpus  # one worker per GPU, whatever --workers says
        workers = ex.client.scheduler_info(n_workers=-1)["workers"]
        seen = set()
        for address, info in workers.items():
            fut = ex.client.submit(worker_device, "cuda", workers=[address], pure=False)
            got = fut.result()
            assert got == torch.device("cuda", gpu_for_worker(info["name"], gpus))
            seen.add(got.index)
            pinned = ex.client.submit(worker_device, "cuda:0", workers=[address], pure=False)
            assert pinned.result() == torch.device("cuda", 0)  # an explicit index is kept
    assert seen == set(range(gpus))


# ------------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def lenet_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "lenet.pt"
    return save_checkpoint(path, model=build_model("lenet"), epoch=0, step=0, history=[])


@pytest.mark.cuda
@pytest.mark.parametrize("executor", ["inprocess", "dask"])
def test_spectrum_command_on_cuda_equals_cpu(lenet_checkpoint, tmp_path, executor):
    pq = pytest.importorskip("pyarrow.parquet")
    if not _mnist_available():
        pytest.skip("MNIST files absent (set LEAFSCOPE_DATA)")
    if executor == "dask":
        pytest.importorskip("distributed")
    common = ["spectrum", "--checkpoint", str(lenet_checkpoint), "--points", "24"]
    common += ["--shard-size", "8", "--dtype", "float64", "--no-progress"]
    assert main([*common, "--device", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    argv = [*common, "--device", "cuda", "--out", str(tmp_path / "gpu")]
    if executor == "dask":
        argv += ["--executor", "dask", "--workers", "1"]
    assert main(argv) == 0
    cpu = pq.read_table(tmp_path / "cpu").sort_by("index").to_pydict()
    gpu = pq.read_table(tmp_path / "gpu").sort_by("index").to_pydict()
    assert gpu["index"] == cpu["index"] == list(range(24))
    assert gpu["predicted"] == cpu["predicted"] and gpu["rank"] == cpu["rank"]
    _assert_spectra_equal(
        torch.tensor(np.array(gpu["eigenvalues"])), torch.tensor(np.array(cpu["eigenvalues"]))
    )


def _readme_test_module():
    """tests/test_readme_commands.py, loaded for its command lines, tiny sizes and checks."""
    path = ROOT / "tests" / "test_readme_commands.py"
    spec = importlib.util.spec_from_file_location("_readme_commands_for_cuda", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fashion_train_available() -> bool:
    from leafscope.data import load_images

    try:
        load_images("fashion-mnist", "train", limit=1, download=False)
    except (LeafscopeError, OSError):
        return False
    return True


@pytest.fixture(scope="module")
def cuda_runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny LeNet runs trained on CUDA with the README test's own train line."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if not _mnist_available():
        pytest.skip("MNIST files absent (set LEAFSCOPE_DATA)")
    root = tmp_path_factory.mktemp("cuda-runs")
    out = {}
    for seed in (0, 1):
        run = root / f"seed{seed}"
        argv = ["train", "--dataset", "mnist", "--model", "lenet", "--epochs", "1", "--out"]
        argv += [str(run), "--limit", "8000", "--seed", str(seed), "--no-progress", "--lr", "0.05"]
        argv += ["--checkpoint-every-steps", "40", "--device", "cuda"]
        assert main(argv) == 0
        out[f"seed{seed}"] = run
    return out


@pytest.mark.cuda
@pytest.mark.parametrize(
    "words",
    _readme_test_module().readme_commands(),
    ids=lambda w: " ".join(w[:2] if w[0] == "thermo" else w[:1]),
)
def test_readme_command_runs_on_cuda(words, cuda_runs, tmp_path):
    """The README test's command with ``--device cuda`` appended (argparse keeps the last value);
    without the Fashion-MNIST training file the two commands that train or fit on it use MNIST
    (and the others' out set stays Fashion-MNIST's test file)."""
    readme = _readme_test_module()

    def sub(ws: list[str]) -> list[str]:
        return readme._substitute(ws, cuda_runs, tmp_path)

    gpu = ["--device", "cuda"]
    if words[0] == "thermo":
        extra, check = readme._THERMO[words[1]]
        target = tmp_path / "out.json"
        argv = sub(words) + extra + ["--json", str(target)] + gpu
    else:
        extra, where, check = readme._SUBCOMMANDS[words[0]]
        if check is None:
            pytest.skip("run end to end by its own test module")
        argv = sub(words) + sub(extra) + ([] if words[0] == "merge" else gpu)
        if not _fashion_train_available():
            argv += NO_FASHION_TRAIN.get(words[0], [])
        target = Path(sub([where])[0])
        if words[0] == "merge":
            base = ["spectrum", "--checkpoint", str(cuda_runs["seed0"] / "epoch_0001.pt")]
            base += ["--points", "8", "--shard-size", "4", "--out", str(target), "--no-progress"]
            base += gpu
            assert main([*base, "--shard", "0/2"]) == 0 and main([*base, "--shard", "1/2"]) == 0
    assert main(argv) == 0, argv
    check(target, target)
