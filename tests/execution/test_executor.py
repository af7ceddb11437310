"""Executors: in process and on Dask clusters give the same results in the same order, and a
missing Dask gives one clear error naming the extra."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from leafscope.errors import InputError
from leafscope.execution import (
    DaskExecutor,
    InProcessExecutor,
    gpu_for_worker,
    make_executor,
    worker_device,
)
from leafscope.information import point_spectra
from leafscope.testing import tiny_mlp

distributed = pytest.importorskip("distributed")


def chunk_spectrum(seed: int) -> tuple[int, torch.Tensor, int]:
    """A top-level task: the spectrum of G of a fixed model at a chunk of seeded points, and the
    process that ran it."""
    x = torch.rand(6, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    model = tiny_mlp(n_in=12, n_classes=4)
    return seed, point_spectra(model, x, batch_size=4).eigenvalues, os.getpid()


def fail_on_three(i: int) -> int:
    if i == 3:
        raise InputError("item 3 is bad")
    return i


def test_in_process_map_keeps_order_and_raises():
    with make_executor() as ex:
        assert isinstance(ex, InProcessExecutor) and ex.workers == 1
        assert ex.map(abs, [-3, 1, -2]) == [3, 1, 2]
        assert ex.map(abs, []) == []
        with pytest.raises(InputError, match="item 3"):
            ex.map(fail_on_three, range(5))


def test_threaded_cluster_equals_in_process():
    seeds = [5, 0, 3, 9, 1, 7]
    expected = InProcessExecutor().map(chunk_spectrum, seeds)
    with DaskExecutor(2, processes=False) as ex:
        assert ex.kind == "dask" and ex.workers == 2
        got = ex.map(chunk_spectrum, seeds, progress=False)
        with pytest.raises(InputError, match="item 3"):
            ex.map(fail_on_three, range(6))
    assert [g[0] for g in got] == seeds  # order of the items, not of completion
    for (_, a, _), (_, b, _) in zip(expected, got, strict=True):
        assert torch.equal(a, b)  # bit for bit


def test_two_process_cluster_on_localhost():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=40,
    )  # fmt: skip
    try:
        with distributed.Client(cluster) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
            assert len(workers) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in workers)
            ex = DaskExecutor(client=client)
            seeds = list(range(8))
            got = ex.map(chunk_spectrum, seeds)
            ex.close()  # a given client stays open
            assert client.status == "running"
    finally:
        cluster.close()
    expected = InProcessExecutor().map(chunk_spectrum, seeds)
    assert [g[0] for g in got] == seeds
    assert all(torch.equal(a[1], b[1]) for a, b in zip(expected, got, strict=True))
    assert os.getpid() not in {g[2] for g in got}  # really ran in the worker processes


def test_executor_options_are_checked():
    with pytest.raises(InputError, match="unknown executor 'ray'"):
        make_executor("ray")
    with pytest.raises(InputError, match="`workers` must be >= 1"):
        make_executor("dask", workers=0)
    with pytest.raises(InputError, match="`scheduler=tcp://x:1` needs `executor=dask`"):
        make_executor("inprocess", scheduler="tcp://x:1")
    with pytest.raises(InputError, match="`workers=4` needs `executor=dask`"):
        make_executor("inprocess", workers=4)


def test_dask_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(InputError, match=r"pip install 'leafscope\[dask\]'"):
        make_executor("dask", workers=2)


def test_gpu_assignment_is_one_worker_per_gpu():
    assert [gpu_for_worker(i, 4) for i in range(6)] == [0, 1, 2, 3, 0, 1]
    assert gpu_for_worker("tcp://a", 2) == gpu_for_worker("tcp://a", 2) in (0, 1)
    with pytest.raises(InputError):
        gpu_for_worker(0, 0)
    assert worker_device("cpu") == torch.device("cpu")  # outside a worker: unchanged


@pytest.mark.cuda
def test_cuda_workers_pin_their_gpu():
    with DaskExecutor(device="cuda", processes=False) as ex:
        assert ex.workers == torch.cuda.device_count()
        devices = ex.map(worker_device, ["cuda"] * ex.workers)
    assert {d.type for d in devices} == {"cuda"} and all(d.index is not None for d in devices)


@pytest.mark.parametrize("processes", [False, True])
def test_local_cluster_listens_on_loopback_only(processes):
    import psutil

    me = psutil.Process()
    with DaskExecutor(1, processes=processes) as ex:
        assert ex.map(abs, [-2]) == [2]
        procs = [me, *me.children(recursive=True)]
        listening = [
            c.laddr.ip
            for proc in procs
            for c in proc.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
    assert listening, "expected the cluster's servers to listen somewhere"
    assert all(ip == "127.0.0.1" for ip in listening), listening
