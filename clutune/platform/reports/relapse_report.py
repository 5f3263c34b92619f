"""Relapse of a run, a compare or a study as a table (``relapse.csv``), drawn from the rows' ``relapse_sets``.

Each row of a run with ``evaluation.relapse.enabled`` carries every set unlearned so far, scored at that request
(:mod:`clutune.core.relapse`); this module unpacks them into one line per (run, request, set), so the question
"do unlearned sets come back as the stream goes on?" reads as the curve of ``acc_over_oracle`` against the
request, from the set's own unlearn request on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clutune.core.storage import write_local_atomic

RELAPSE_FILE = "relapse.csv"
COLUMNS = (
    "method",
    "seed",
    "run_id",
    "request",
    "unlearned_at",
    "set",
    "n",
    "acc",
    "oracle_acc",
    "acc_over_oracle",
    "kl",
)


def relapse_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (run, request, earlier unlearned set); empty where the rows carry no relapse."""
    if "relapse_sets" not in rows:
        return pd.DataFrame(columns=list(COLUMNS))
    records = []
    for row in rows.dropna(subset=["relapse_sets"]).itertuples(index=False):
        head = {"method": row.method, "seed": getattr(row, "seed", None), "run_id": row.run_id, "request": row.request}
        records += [{**head, **record} for record in json.loads(row.relapse_sets)]
    frame = pd.DataFrame.from_records(records, columns=[c for c in COLUMNS if c != "acc_over_oracle"])
    frame[["acc", "oracle_acc", "kl"]] = frame[["acc", "oracle_acc", "kl"]].astype(float)
    frame["acc_over_oracle"] = frame["acc"] - frame["oracle_acc"]
    return frame[list(COLUMNS)].sort_values(["method", "seed", "unlearned_at", "request"], ignore_index=True)


def write_relapse(rows: pd.DataFrame, folder: Path) -> Path | None:
    """``relapse.csv`` in ``folder``; None (and no file) where the rows carry no relapse."""
    frame = relapse_frame(rows)
    if frame.empty:
        return None
    path = Path(folder) / RELAPSE_FILE
    write_local_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    return path


__all__ = ["COLUMNS", "RELAPSE_FILE", "relapse_frame", "write_relapse"]
