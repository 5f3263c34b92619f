"""The results table: one row per (run, request).

While work runs, rows are appended per request to Arrow IPC streams under ``<folder>/parts/`` (one stream per
run, a new stream file when a row's schema changes), so a crash loses nothing measured, the cost of a write does
not grow with the stream, and a reader always sees whole rows (a torn last batch is skipped). At the end (and on
demand) the parts are compacted into ``results.parquet``, written to a temporary file and renamed, keeping the
last copy of each (run, request): a trial that restarts from a checkpoint reports its repeated requests again.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clutune.core import storage
from clutune.errors import UserError, raise_if_disk_full

# Per-request metrics a sweep may minimise (as their mean over the requests).
OBJECTIVE_METRICS = (
    "kl_oracle_all",
    "kl_oracle_remain",
    "kl_oracle_learn",
    "kl_oracle_unlearn",
    "kl_oracle_test",
    "avg_gap",
    "gap_remain",
    "gap_learn",
    "gap_unlearn",
    "gap_test",
    "forgetting",
    "seconds",
    "samples_processed",
)
HEADLINE = ("kl_oracle_all", "avg_gap", "acc_remain", "acc_learn", "acc_unlearn", "acc_test", "mia_member_rate")


def check_out_dir(out: Path, overwrite: bool, resumable: bool = True) -> None:
    """Refuse to clobber an earlier run's results unless asked to: a typo in --out must not lose a result."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if (out / "results.parquet").exists() and not overwrite:
        raise UserError(f"--out {out} already holds results.parquet; choose another folder or pass --overwrite")
    if any((out / "parts").glob("*.arrows")) and not overwrite:
        how = "pass --resume to continue it, or --overwrite" if resumable else "pass --overwrite to replace it"
        raise UserError(f"--out {out} holds the rows of an interrupted run: {how}")


def write_results(location: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """A path or a URI; written whole, then moved into place, so a reader (or a crash) never sees half a table."""
    sink = pa.BufferOutputStream()
    # Arrow takes a table's columns from its first row; rows of different methods carry different keys
    # (their own hp_* columns), so every row gets every key, None where it has none.
    keys = list(dict.fromkeys(k for row in rows for k in row))
    pq.write_table(pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows]), sink)
    storage.write_bytes(str(location), sink.getvalue().to_pybytes())


def read_results(location: str | Path) -> list[dict[str, Any]]:
    fs, path = storage.resolve(str(location))
    return pq.read_table(path, filesystem=fs).to_pylist()


class ResultStream:
    """Appends rows to ``<folder>/parts/<run>-<n>.arrows``; one writer process (the driver) per folder."""

    def __init__(self, folder: Path) -> None:
        self.parts = Path(folder) / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, tuple[Any, Any, pa.Schema]] = {}  # run -> (file, writer, schema)

    def _new_part(self, run: str, schema: pa.Schema) -> tuple[Any, Any, pa.Schema]:
        n = len(list(self.parts.glob(f"{run}-*.arrows")))
        path = self.parts / f"{run}-{n:04d}.arrows"
        f = open(path, "wb")  # noqa: SIM115 (kept open across appends)
        try:
            writer = pa.ipc.new_stream(f, schema)
            _sync(f)  # the header on the disk: a later torn append is cut back to whole batches, never below it
        except BaseException as e:
            _discard(f, path, 0)
            raise_if_disk_full(e, path)
            raise
        return f, writer, schema

    def append(self, run: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        table = pa.Table.from_pylist(list(rows))
        current = self._open.get(run)
        if current is not None and not current[2].equals(table.schema):
            try:
                table = table.cast(current[2])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                self.close(run)
                current = None
        if current is None:
            current = self._open[run] = self._new_part(run, table.schema)
        f, writer, _ = current
        whole = f.tell()  # everything before it is on the disk (the last append synced it)
        try:
            writer.write_table(table)
            _sync(f)
        except BaseException as e:  # a full disk midway: the part is cut back to its whole batches, and closed
            self._open.pop(run)
            _discard(f, Path(f.name), whole)
            raise_if_disk_full(e, f.name)
            raise

    def close(self, run: str | None = None) -> None:
        for key in [run] if run else list(self._open):
            if key not in self._open:
                continue
            f, writer, _ = self._open.pop(key)
            writer.close()
            f.close()


def _sync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())


def _discard(f: Any, path: Path, whole: int) -> None:
    """Close a part whose last write failed and cut it back to its first ``whole`` bytes (none: remove it).
    Closing flushes what the failed write left buffered, so the cut comes after it."""
    with contextlib.suppress(OSError):
        f.close()
    if whole:
        os.truncate(path, whole)
    else:
        path.unlink(missing_ok=True)


def read_parts(folder: Path, run: str | None = None) -> list[dict[str, Any]]:
    """Every whole row appended so far (of one run, or of all), oldest first per run; a batch torn by a crash
    is skipped."""
    rows: list[dict[str, Any]] = []
    for path in sorted((Path(folder) / "parts").glob(f"{run}-*.arrows" if run else "*.arrows")):
        with open(path, "rb") as f:
            try:
                reader = pa.ipc.open_stream(f)
            except (pa.ArrowInvalid, OSError):
                continue
            while True:
                try:
                    batch = reader.read_next_batch()
                except (StopIteration, pa.ArrowInvalid, OSError):
                    break
                rows.extend(batch.to_pylist())
    return rows


def dedupe(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each (run_id, request), in (run, request) order."""
    last: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        last[(row.get("run_id"), row["request"])] = row
    return [last[k] for k in sorted(last, key=lambda k: (str(k[0]), k[1]))]


def compact(folder: Path) -> list[dict[str, Any]]:
    """Parts -> ``results.parquet`` (atomically); returns the rows written."""
    rows = dedupe(read_parts(folder))
    if rows:
        write_results(Path(folder) / "results.parquet", rows)
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def format_row(row: dict[str, Any], total: int) -> str:
    head = f"[{row['request'] + 1}/{total}] {row['method']} {row['kind']:<7}"
    body = " ".join(f"{k}={_fmt(row[k])}" for k in HEADLINE if k in row)
    return f"{head} {body} seconds={row['seconds']:.2f} samples={row['samples_processed']}"
