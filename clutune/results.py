"""The results table: one row per (run, request), Parquet on disk, rewritten atomically after each request."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clutune.errors import UserError

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


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to clobber an earlier run's results unless asked to: a typo in --out must not lose a result."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if (out / "results.parquet").exists() and not overwrite:
        raise UserError(f"--out {out} already holds results.parquet; choose another folder or pass --overwrite")


def write_results(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Temporary file then rename, so a reader (or a crash) never sees a half-written table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(list(rows)), tmp)
    os.replace(tmp, path)


def read_results(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def format_row(row: dict[str, Any], total: int) -> str:
    head = f"[{row['request'] + 1}/{total}] {row['method']} {row['kind']:<7}"
    body = " ".join(f"{k}={_fmt(row[k])}" for k in HEADLINE if k in row)
    return f"{head} {body} seconds={row['seconds']:.2f} samples={row['samples_processed']}"
