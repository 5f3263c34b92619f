"""``clutune export``: an MLflow experiment back as one results table, one row per (run, request).

Rows are rebuilt from the metric histories (the step is the request index), so a table can be had from the
record alone, wherever the folders went. ``run_id`` here is the MLflow run id; ``parent_run_id`` and the
``params.*`` columns tie each row to its command and configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from clutune.core.storage import write_local_atomic
from clutune.errors import UserError
from clutune.guards.masking import mask
from clutune.guards.uris import require_existing_store
from clutune.platform.record.tracking import KIND_METRIC, PARENT_TAG, ROLE_TAG, TRIAL_TAG, resolve_tracking_uri

_BOOLS = ("oracle_evaluated", "oracle_cached")
_PARENT_ROLES = {"sweep", "compare", "study"}


def _history(client: Any, run: Any) -> pd.DataFrame:
    """step x metric for one run; metrics logged once at step 0 by a parent (best_*) are not requests."""
    series = {}
    for key in run.data.metrics:
        points = client.get_metric_history(run.info.run_id, key)
        series[key] = pd.Series({p.step: p.value for p in points}, dtype=float)
    frame = pd.DataFrame(series)
    frame.index.name = "request"
    return frame.reset_index()


def experiment_rows(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    from mlflow.tracking import MlflowClient

    uri = require_existing_store(resolve_tracking_uri(tracking_uri))  # reading must not create a store
    client = MlflowClient(tracking_uri=uri)
    try:
        found = client.get_experiment_by_name(experiment)
    except Exception as e:  # noqa: BLE001
        raise UserError(mask(f"cannot read MLflow at {uri}: {str(e).splitlines()[0]}")) from None
    if found is None:
        raise UserError(f"no MLflow experiment {experiment!r} in {mask(uri)}")
    runs = client.search_runs([found.experiment_id], max_results=50000)
    by_id = {r.info.run_id: r for r in runs}
    frames = []
    for run in runs:
        tags = run.data.tags
        if tags.get(ROLE_TAG) in _PARENT_ROLES or not run.data.metrics:
            continue
        frame = _history(client, run)
        parent = by_id.get(tags.get(PARENT_TAG, ""))
        params = {**(parent.data.params if parent else {}), **run.data.params}
        frame.insert(0, "run_id", run.info.run_id)
        frame.insert(1, "parent_run_id", tags.get(PARENT_TAG, ""))
        frame.insert(2, "run_name", tags.get("mlflow.runName", ""))
        frame.insert(3, "role", tags.get(ROLE_TAG, ""))
        frame.insert(4, "trial_id", tags.get(TRIAL_TAG, ""))
        frame.insert(5, "method", params.get("method", ""))
        if "seed" not in frame:
            frame["seed"] = pd.to_numeric(params.get("seed"), errors="coerce")
        if KIND_METRIC in frame:
            frame.insert(7, "kind", frame.pop(KIND_METRIC).map({1.0: "unlearn", 0.0: "learn"}))
        for column in _BOOLS:
            if column in frame:
                frame[column] = frame[column].fillna(0).astype(bool)
        for key, value in params.items():
            frame[f"params.{key}"] = value
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run_id", "parent_run_id", "run_name", "role", "trial_id", "method", "request"])
    out = pd.concat(frames, ignore_index=True)
    out["request"] = out["request"].astype("int64")
    if "seed" in out:
        out["seed"] = pd.to_numeric(out["seed"], errors="coerce").astype("Int64")
    return out.sort_values(["parent_run_id", "run_id", "request"]).reset_index(drop=True)


def export_experiment(experiment: str, tracking_uri: str | None, out: Path) -> pd.DataFrame:
    if out.suffix != ".parquet":
        raise UserError(f"--out {out}: expected a .parquet file name")
    if out.parent and not out.parent.exists():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    frame = experiment_rows(experiment, tracking_uri)
    write_local_atomic(out, lambda tmp: frame.to_parquet(tmp, index=False))
    return frame


__all__ = ["experiment_rows", "export_experiment"]
