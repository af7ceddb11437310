"""Results at scale: a folder of Parquet shards, its recorded settings, resume and merge.

Layout of a result folder::

    DIR/_settings.json         what defines the rows (compared on --resume) and descriptive info
    DIR/shard-00000.parquet    rows of points [0, S), written atomically: it exists only complete
    DIR/shard-00001.parquet    rows of points [S, 2S) ...
    DIR/_summary.json          summary over all rows (written when every shard is there)

The JSON names start with ``_`` (and temporary files with ``.``) so that Parquet readers given
the folder (``pandas.read_parquet(DIR)``, ``pyarrow.dataset.dataset(DIR)``) skip them.

Every file is written with :func:`leafscope.io.atomic_write`, so a job killed at any moment
leaves only complete shards; ``resume=True`` skips them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leafscope.errors import InputError
from leafscope.io import atomic_write, write_json

__all__ = [
    "SETTINGS_FILE",
    "fingerprint_of",
    "SUMMARY_FILE",
    "ResultFolder",
    "parse_slice",
    "plan_shards",
    "require_pyarrow",
    "slice_shards",
]

SETTINGS_FILE = "_settings.json"
SUMMARY_FILE = "_summary.json"
SHARD_NAME = "shard-{:05d}.parquet"
_SHARD_RE = re.compile(r"^shard-(\d{5,})\.parquet$")


def require_pyarrow() -> Any:
    """Import :mod:`pyarrow.parquet` or raise one clear :class:`InputError`."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(
            "Parquet results (a results folder) need pyarrow, which is not installed: pip "
            "install pyarrow (or keep a small job's rows in memory)"
        ) from exc
    return pq


def plan_shards(n_points: int, shard_size: int) -> list[range]:
    """Positions ``[0, n_points)`` cut into consecutive shards of ``shard_size`` (the last one
    shorter)."""
    if shard_size < 1:
        raise InputError(f"`shard_size` must be >= 1 (got {shard_size})")
    return [range(s, min(s + shard_size, n_points)) for s in range(0, n_points, shard_size)]


def parse_slice(text: str) -> tuple[int, int]:
    """``"I/N"`` (slice I of N, counted from 1 as job arrays number their tasks) as
    ``(I, N)``."""
    try:
        i, n = (int(t) for t in text.strip().split("/"))
    except ValueError as exc:
        raise InputError(
            f"a slice must look like I/N with 1 <= I <= N, e.g. 1/4 (got {text!r})"
        ) from exc
    if n < 1 or not 1 <= i <= n:
        raise InputError(
            f"slice {text}: need N >= 1 and 1 <= I <= N (slices count from 1, e.g. "
            f"1/{max(n, 1)} .. {max(n, 1)}/{max(n, 1)})"
        )
    return i, n


FINGERPRINT_KEY = b"leafscope.fingerprint"
CHECKSUM_KEY = b"leafscope.checksum"


def fingerprint_of(settings: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a job's settings: what produced a shard."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def rows_checksum(columns: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the rows' values (column names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(columns):
        value = np.ascontiguousarray(np.asarray(columns[name]))
        if value.dtype == object:
            value = np.asarray([str(v) for v in value.reshape(-1)]).reshape(value.shape)
        if value.dtype.kind in "fc":
            value = value.astype(np.float64)
        elif value.dtype.kind in "iub":
            value = value.astype(np.int64)
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        if value.dtype.kind == "U":
            digest.update("\x00".join(value.reshape(-1).tolist()).encode())
        else:
            digest.update(value.tobytes())
    return digest.hexdigest()


def slice_shards(n_shards: int, part: int, parts: int) -> range:
    """The shards of slice ``part`` of ``parts``: consecutive blocks differing by at most one."""
    return range(part * n_shards // parts, (part + 1) * n_shards // parts)


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {b!r} here, {a!r} in the folder"]


class ResultFolder:
    """A folder of Parquet shards with its settings (see the module docstring).

    Args:
        path: the folder (created on :meth:`prepare`).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def shard_path(self, shard: int) -> Path:
        return self.path / SHARD_NAME.format(shard)

    def finished(self) -> set[int]:
        """Shards whose file exists (each is complete: files are written atomically)."""
        if not self.path.is_dir():
            return set()
        return {int(m.group(1)) for p in self.path.iterdir() if (m := _SHARD_RE.match(p.name))}

    def read_settings(self) -> dict[str, Any] | None:
        path = self.path / SETTINGS_FILE
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def write_shard(
        self, shard: int, columns: Mapping[str, np.ndarray], fingerprint: str | None = None
    ) -> Path:
        """Write one shard atomically, stamped with the job's ``fingerprint`` and a checksum
        of its rows (Parquet key-value metadata). 2-D arrays become ``list<double>``
        columns."""
        pq = require_pyarrow()
        table = columns_to_table(columns)
        if fingerprint is not None:
            checksum = rows_checksum(table_to_columns(table))
            table = table.replace_schema_metadata(
                {FINGERPRINT_KEY: fingerprint.encode(), CHECKSUM_KEY: checksum.encode()}
            )
        return atomic_write(self.shard_path(shard), lambda handle: pq.write_table(table, handle))

    def shard_problem(self, shard: int, fingerprint: str) -> str | None:
        """Why shard ``shard`` cannot be trusted (None when it verifies): unreadable
        (truncated, empty, not Parquet), written by another job, or rows that do not match
        their checksum."""
        pq = require_pyarrow()
        path = self.shard_path(shard)
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any reader error means a damaged file
            first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            return f"unreadable ({first})"
        meta = table.schema.metadata or {}
        found = meta.get(FINGERPRINT_KEY)
        if found is None:
            return "carries no fingerprint (not written by this job)"
        if found.decode() != fingerprint:
            return "was produced by another job (other model, data or parameters)"
        try:
            checksum = rows_checksum(table_to_columns(table))
        except Exception as exc:  # noqa: BLE001
            return f"unreadable rows ({type(exc).__name__})"
        if checksum != meta.get(CHECKSUM_KEY, b"").decode():
            return "rows do not match their checksum"
        return None

    def verify_all(self, n_shards: int, fingerprint: str) -> None:
        """Raise :class:`InputError` naming the first shard that does not verify."""
        for shard in range(n_shards):
            problem = self.shard_problem(shard, fingerprint)
            if problem is not None:
                raise InputError(
                    f"{self.shard_path(shard)}: {problem}: delete it and resume the job to "
                    "recompute it"
                )

    def prepare_job(
        self,
        settings: Mapping[str, Any],
        info: Mapping[str, Any],
        fingerprint: str,
        *,
        resume: bool,
        own: range,
    ) -> tuple[set[int], dict[int, str]]:
        """Check or record the job's settings; return the verified finished shards of
        ``own`` and, on resume, the damaged or foreign ones removed for recomputation (shard
        -> reason).

        Raises:
            InputError: the folder holds results of other settings, or finished shards of
                ``own`` without ``resume``.
        """
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"result folder {self.path} is a file: pass a folder")
        settings = json.loads(json.dumps(dict(settings)))
        recorded = self.read_settings()
        if recorded is not None and recorded.get("settings") != settings:
            diff = "; ".join(_diff(recorded.get("settings"), settings)) or "unreadable settings"
            raise InputError(
                f"result folder {self.path} holds results of other settings ({diff}): pass "
                "the same settings to resume, or another folder"
            )
        present = self.finished() & set(own)
        if present and not resume:
            raise InputError(
                f"result folder {self.path} already holds {len(present)} finished shard(s) of "
                "this job: resume it, or pass another folder"
            )
        done, bad = set(), {}
        for shard in sorted(present):
            problem = self.shard_problem(shard, fingerprint)
            if problem is None:
                done.add(shard)
            else:
                bad[shard] = problem
                self.shard_path(shard).unlink()
        if recorded is None:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(self.path / SETTINGS_FILE, {"settings": settings, "info": dict(info)})
        return done, bad

    def discard(self, *, remove_folder: bool) -> None:
        """Undo :meth:`prepare_job` of a run that wrote no shard (so a corrected rerun is not
        refused): its settings file, and the folder itself when the run created it."""
        if self.finished():
            return
        (self.path / SETTINGS_FILE).unlink(missing_ok=True)
        if remove_folder and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def check_complete(self, n_shards: int) -> None:
        """Raise :class:`InputError` naming the missing shards (and how to make them)."""
        missing = sorted(set(range(n_shards)) - self.finished())
        if missing:
            shown = ", ".join(str(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise InputError(
                f"{self.path} misses {len(missing)} of {n_shards} shards ({shown}): run the "
                "missing slices (or the job again with `resume`), then merge"
            )

    def read_columns(self, n_shards: int, columns: Sequence[str] | None = None) -> dict:
        """The rows of shards ``0..n_shards-1`` in order, as NumPy arrays (list columns as 2-D
        arrays)."""
        pq = require_pyarrow()
        import pyarrow as pa

        tables = [pq.read_table(self.shard_path(s), columns=columns) for s in range(n_shards)]
        return table_to_columns(pa.concat_tables(tables))

    def write_summary(self, payload: Mapping[str, Any]) -> Path:
        return write_json(self.path / SUMMARY_FILE, dict(payload))


def columns_to_table(columns: Mapping[str, np.ndarray]) -> Any:
    """A :class:`pyarrow.Table` of 1-D columns and 2-D ``(n, k)`` float columns (as
    ``list<double>``)."""
    import pyarrow as pa

    arrays = {}
    for name, value in columns.items():
        value = np.asarray(value)
        if value.ndim == 2:
            n, k = value.shape
            offsets = np.arange(0, (n + 1) * k, k, dtype=np.int32)
            arrays[name] = pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(value.reshape(-1).astype(np.float64))
            )
        else:
            arrays[name] = pa.array(value)
    return pa.table(arrays)


def table_to_columns(table: Any) -> dict[str, np.ndarray]:
    """The inverse of :func:`columns_to_table` (list columns of equal length become 2-D)."""
    import pyarrow as pa

    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            n = len(column)
            flat = column.flatten().to_numpy(zero_copy_only=False)
            out[name] = flat.reshape(n, -1) if n else flat.reshape(0, 0)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out
