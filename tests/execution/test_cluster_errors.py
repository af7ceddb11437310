"""Clusters that fail loudly: a malformed address, a refused or silent scheduler, a scheduler
without workers and a worker that dies under its task each give one InputError line, fast; and
torch threads per worker keep results bitwise equal to an in-process run."""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass

import pytest
import torch

from leafscope.errors import InputError
from leafscope.execution import DaskExecutor, InProcessExecutor, make_executor
from leafscope.execution.executor import check_executor_options, check_scheduler_address

distributed = pytest.importorskip("distributed")


@dataclass(frozen=True)
class Shard:
    shard: int


def die_on_shard_2(item: Shard) -> int:
    """A top-level task whose worker process exits (as the kernel's OOM killer would end it)."""
    if item.shard == 2:
        os._exit(1)
    return item.shard


def matmul_bytes(seed: int) -> tuple[bytes, int]:
    """A float64 result whose bits may depend on torch's thread count, and that count."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(96, 700, generator=g, dtype=torch.float64)
    b = torch.rand(700, 80, generator=g, dtype=torch.float64)
    c = torch.tanh(a @ b / 100.0) @ torch.rand(80, 300, generator=g, dtype=torch.float64)
    return c.sum(dim=0).numpy().tobytes() + c.sum().reshape(1).numpy().tobytes(), (
        torch.get_num_threads()
    )


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(
    "address",
    ["notanaddress", "tcp://10.0.0.5", "http://10.0.0.5:8786", "tcp://host:0", "tcp://h:99999"],
)
def test_malformed_address_fails_before_any_connection(address, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(distributed, "Client", no_network)
    with pytest.raises(InputError) as error:
        make_executor("dask", scheduler=address)
    text = one_line(error)
    assert repr(address) in text and "tcp://10.0.0.5:8786" in text  # the bad one, a good one
    assert "--scheduler" not in text
    with pytest.raises(InputError, match="is not valid"):
        check_executor_options("dask", None, address)  # the CLI's early check sees it too


def test_valid_addresses_parse():
    assert check_scheduler_address("tcp://10.0.0.5:8786") == ("tcp", "10.0.0.5", 8786)
    assert check_scheduler_address("tls://node-1.lab:8786") == ("tls", "node-1.lab", 8786)
    assert check_scheduler_address("node7:8786") == ("tcp", "node7", 8786)
    assert check_scheduler_address("tcp://[::1]:8786") == ("tcp", "[::1]", 8786)
    assert check_scheduler_address("inproc://10.0.0.5/1234/1") == ("inproc", None, None)


def test_refused_connection_fails_fast():
    start = time.monotonic()
    with pytest.raises(InputError) as error:
        make_executor("dask", scheduler="tcp://127.0.0.1:1")
    elapsed = time.monotonic() - start
    text = one_line(error)
    assert "tcp://127.0.0.1:1" in text and "refused" in text
    assert elapsed < 20, elapsed  # not Dask's 30 s of retries


def test_silent_scheduler_fails_within_the_timeout():
    listener = socket.socket()  # accepts TCP (the kernel does), never answers Dask's handshake
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    try:
        start = time.monotonic()
        with pytest.raises(InputError) as error:
            make_executor("dask", scheduler=address, connect_timeout=1.5)
        elapsed = time.monotonic() - start
    finally:
        listener.close()
    text = one_line(error)
    assert address in text and "1.5 s" in text and "did not answer" in text
    assert elapsed < 6, elapsed


def test_scheduler_without_workers_fails_within_the_timeout():
    cluster = distributed.LocalCluster(
        n_workers=0, processes=False, host="127.0.0.1", protocol="tcp://",
        dashboard_address=None, silence_logs=40,
    )  # fmt: skip
    try:
        start = time.monotonic()
        with pytest.raises(InputError) as error:
            make_executor("dask", scheduler=cluster.scheduler_address, connect_timeout=2)
        elapsed = time.monotonic() - start
        text = one_line(error)
        assert "no workers" in text and cluster.scheduler_address in text and "2 s" in text
        assert elapsed < 10, elapsed
        assert not cluster.scheduler.clients.keys() - {"fire-and-forget"}  # client closed
    finally:
        cluster.close()


def test_joined_scheduler_with_a_worker_runs():
    cluster = distributed.LocalCluster(
        n_workers=1, processes=False, host="127.0.0.1", protocol="tcp://",
        dashboard_address=None, silence_logs=40,
    )  # fmt: skip
    try:
        with make_executor("dask", scheduler=cluster.scheduler_address, connect_timeout=5) as ex:
            assert ex.workers == 1
            assert ex.map(abs, [-1, 2, -3]) == [1, 2, 3]
    finally:
        cluster.close()


def test_a_worker_that_dies_names_its_task():
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        ex = DaskExecutor(1, processes=True, connect_timeout=10)
    with ex:
        assert ex.map(die_on_shard_2, [Shard(0), Shard(1)]) == [0, 1]
        start = time.monotonic()
        with pytest.raises(InputError) as error:
            ex.map(die_on_shard_2, [Shard(0), Shard(1), Shard(2), Shard(3)])
        elapsed = time.monotonic() - start
    text = one_line(error)
    # Dask marks every task the dead worker held (it cannot tell which one it ran): all named
    named = re.search(r"\(shards? ([0-9, ]+)[;)]", text)
    assert "die_on_shard_2" in text and named and "2" in named[1].split(", "), text
    assert "memory limit" in text and "fewer workers per machine" in text, text
    assert "--" not in text, text  # no CLI flags in library messages
    assert elapsed < 20, elapsed


def test_threads_per_worker_and_bitwise_equality():
    seeds = [0, 1, 2, 3]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = InProcessExecutor().map(matmul_bytes, seeds)
    finally:
        torch.set_num_threads(before)
    assert {t for _, t in expected} == {1}
    with DaskExecutor(2, processes=True) as ex:
        assert ex.describe()["threads"] == 1
        got = ex.map(matmul_bytes, seeds)
        two = DaskExecutor(client=ex.client, threads=2).map(matmul_bytes, seeds[:2])
    assert [t for _, t in got] == [1] * len(seeds)  # one torch thread per worker by default
    assert [b for b, _ in got] == [b for b, _ in expected]  # bit for bit
    assert [t for _, t in two] == [2, 2]  # threads=2 reaches the worker processes
    assert torch.get_num_threads() == before  # this process keeps its own setting


def test_in_process_threads_are_restored():
    before = torch.get_num_threads()
    with make_executor("inprocess", threads=1) as ex:
        assert ex.map(matmul_bytes, [0])[0][1] == 1
    assert torch.get_num_threads() == before


def test_timeout_and_threads_are_checked():
    with pytest.raises(InputError, match="connect_timeout"):
        make_executor("dask", scheduler="tcp://127.0.0.1:1", connect_timeout=0)
    with pytest.raises(InputError, match="threads must be >= 1"):
        make_executor("dask", threads=0)


def test_a_cluster_that_loses_all_its_workers_fails_instead_of_hanging():
    cluster = distributed.LocalCluster(
        n_workers=1, processes=False, host="127.0.0.1", protocol="tcp://",
        dashboard_address=None, silence_logs=40,
    )  # fmt: skip
    try:
        with make_executor("dask", scheduler=cluster.scheduler_address, connect_timeout=1) as ex:
            cluster.scale(0)  # the only worker leaves and nobody restarts it
            deadline = time.monotonic() + 10
            while ex.client.scheduler_info(n_workers=-1)["workers"]:
                assert time.monotonic() < deadline, "the worker did not leave"
                time.sleep(0.05)
            start = time.monotonic()
            with pytest.raises(InputError) as error:
                ex.map(abs, [Shard(5)])
            elapsed = time.monotonic() - start
    finally:
        cluster.close()
    text = one_line(error)
    assert "lost all its workers" in text and "shard 5" in text and "abs" in text, text
    assert elapsed < 8, elapsed


def hoard_memory(item: Shard) -> int:
    """Allocate 64 MiB more every 50 ms until the nanny ends this worker for its memory."""
    import numpy as np

    held = []
    for _ in range(200):
        held.append(np.ones(8 * 2**20))
        time.sleep(0.05)
    return item.shard


@pytest.mark.slow
def test_a_worker_killed_for_memory_names_its_task_and_the_limit():
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
            memory_limit="900MiB", dashboard_address=None, silence_logs=50,
        )  # fmt: skip
    try:
        with distributed.Client(cluster) as client, DaskExecutor(client=client) as ex:
            with pytest.raises(InputError) as error:
                ex.map(hoard_memory, [Shard(7)])
    finally:
        cluster.close()
    text = one_line(error)
    assert "hoard_memory" in text and "shard 7" in text and "900.00 MiB" in text, text
