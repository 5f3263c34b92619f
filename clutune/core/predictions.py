"""Per-sample predictions of a request, enough to recompute every metric without the models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clutune.core import storage
from clutune.core.metrics import SPLITS, Split


def write_predictions(
    location: str | Path, splits: dict[str, Split], train_task: np.ndarray, class_task: np.ndarray
) -> None:
    """One row per evaluated sample; ``task`` is the task of its class (-1 if in none)."""
    cols: dict[str, list] = {"sample_id": [], "split": [], "label": [], "task": [], "p_model": [], "p_oracle": []}
    for name in SPLITS:
        s = splits[name]
        cols["sample_id"].append(s.ids.astype(np.int64))
        cols["split"].append(np.full(len(s), name, dtype=object))
        cols["label"].append(s.labels.astype(np.int64))
        task = class_task[s.labels] if name == "test" else train_task[s.ids]
        cols["task"].append(np.asarray(task, dtype=np.int64))
        cols["p_model"].append(s.p_model)
        cols["p_oracle"].append(s.p_oracle)
    num_classes = splits["test"].p_model.shape[1]
    table = pa.table(
        {
            "sample_id": pa.array(np.concatenate(cols["sample_id"])),
            "split": pa.array(np.concatenate(cols["split"]).tolist(), pa.string()),
            "label": pa.array(np.concatenate(cols["label"])),
            "task": pa.array(np.concatenate(cols["task"])),
            "p_model": _list_column(np.concatenate(cols["p_model"]), num_classes),
            "p_oracle": _list_column(np.concatenate(cols["p_oracle"]), num_classes),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes(str(location), sink.getvalue().to_pybytes())  # a path or a URI, never seen half-written


def _list_column(probs: np.ndarray, num_classes: int) -> pa.Array:
    flat = pa.array(np.asarray(probs, dtype=np.float64).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, num_classes)


def read_predictions(location: str | Path) -> dict[str, Split]:
    fs, path = storage.resolve(str(location))
    table = pq.read_table(path, filesystem=fs)
    split = np.asarray(table.column("split").to_pylist())
    ids = table.column("sample_id").to_numpy()
    labels = table.column("label").to_numpy()
    pm = np.stack(table.column("p_model").to_numpy(zero_copy_only=False))
    po = np.stack(table.column("p_oracle").to_numpy(zero_copy_only=False))
    out = {}
    for name in SPLITS:
        m = split == name
        c = pm.shape[1]
        out[name] = Split(ids[m], labels[m], pm[m].reshape(-1, c), po[m].reshape(-1, c))
    return out
