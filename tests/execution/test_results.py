"""Result folders: shard plans cover every point once, slices cover every shard once, Parquet
round trips are exact, and a folder refuses to mix settings or to be overwritten silently."""

from __future__ import annotations

import numpy as np
import pytest

from leafscope.errors import InputError
from leafscope.execution import ResultFolder, parse_slice, plan_shards, slice_shards
from leafscope.execution.results import columns_to_table, table_to_columns

pytest.importorskip("pyarrow")


@pytest.mark.parametrize("n, size", [(1, 1), (10, 3), (64, 16), (65, 16), (5, 100)])
def test_shards_cover_every_point_once_in_order(n, size):
    shards = plan_shards(n, size)
    assert [i for s in shards for i in s] == list(range(n))
    assert all(len(s) == size for s in shards[:-1]) and 1 <= len(shards[-1]) <= size


@pytest.mark.parametrize("n_shards, parts", [(1, 1), (7, 3), (3, 7), (100, 8), (4, 4)])
def test_slices_cover_every_shard_once(n_shards, parts):
    slices = [slice_shards(n_shards, i, parts) for i in range(parts)]
    assert [s for sl in slices for s in sl] == list(range(n_shards))
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_parse_slice_counts_from_one_as_job_arrays_do():
    assert parse_slice("1/4") == (1, 4) and parse_slice("4/4") == (4, 4)
    for bad in ("0/4", "5/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(InputError, match="1 <= I <= N"):
            parse_slice(bad)
    with pytest.raises(InputError, match="`shard_size` must be >= 1"):
        plan_shards(10, 0)


def test_parquet_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    columns = {
        "index": np.arange(5, dtype=np.int64),
        "eigenvalues": rng.random((5, 9)) * 10.0 ** rng.integers(-20, 3, (5, 9)),
        "trace": rng.random(5),
    }
    folder = ResultFolder(tmp_path)
    folder.write_shard(0, columns)
    folder.write_shard(1, {k: v[::-1].copy() for k, v in columns.items()})
    assert folder.finished() == {0, 1}
    back = folder.read_columns(2)
    assert np.array_equal(back["eigenvalues"][:5], columns["eigenvalues"])
    assert np.array_equal(back["eigenvalues"][5:], columns["eigenvalues"][::-1])
    assert np.array_equal(back["index"], np.r_[np.arange(5), np.arange(5)[::-1]])
    table = columns_to_table(columns)
    assert str(table.schema.field("eigenvalues").type) == "list<item: double>"
    assert table_to_columns(table)["trace"].tolist() == columns["trace"].tolist()


def test_folder_refuses_other_settings_and_silent_overwrite(tmp_path):
    folder = ResultFolder(tmp_path / "out")
    settings = {"dtype": "float64", "shard_size": 4}
    fp = "f" * 64
    assert folder.prepare_job(settings, {}, fp, resume=False, own=range(3)) == (set(), {})
    folder.write_shard(1, {"unit": np.arange(4)}, fp)
    with pytest.raises(InputError, match="resume it, or pass another folder"):
        folder.prepare_job(settings, {}, fp, resume=False, own=range(3))
    assert folder.prepare_job(settings, {}, fp, resume=False, own=range(2, 3)) == (set(), {})
    assert folder.prepare_job(settings, {}, fp, resume=True, own=range(3)) == ({1}, {})
    with pytest.raises(InputError, match=r"other settings \(dtype: 'float32' here, 'float64'"):
        folder.prepare_job({**settings, "dtype": "float32"}, {}, fp, resume=True, own=range(3))
    with pytest.raises(InputError, match="misses 2 of 3 shards"):
        folder.check_complete(3)


def test_a_shard_of_another_job_or_with_altered_rows_does_not_verify(tmp_path):
    folder = ResultFolder(tmp_path)
    rows = {"unit": np.arange(3), "value": np.array([0.5, 1.5, 2.5])}
    folder.write_shard(0, rows, "a" * 64)
    assert folder.shard_problem(0, "a" * 64) is None
    assert "another job" in folder.shard_problem(0, "b" * 64)
    folder.write_shard(1, rows)  # no fingerprint: not written by a job
    assert "no fingerprint" in folder.shard_problem(1, "a" * 64)
    import pyarrow.parquet as pq

    table = pq.read_table(folder.shard_path(0))
    meta = table.schema.metadata
    altered = columns_to_table({**rows, "value": np.array([0.5, 1.5, 2.75])})
    pq.write_table(altered.replace_schema_metadata(meta), folder.shard_path(0))
    assert "checksum" in folder.shard_problem(0, "a" * 64)
    folder.shard_path(0).write_bytes(b"PAR1 not really")
    assert folder.shard_problem(0, "a" * 64).startswith("unreadable")
