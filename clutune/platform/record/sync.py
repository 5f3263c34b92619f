"""``clutune sync``: write to MLflow what a folder holds and MLflow lacks, so a record broken by a dead server
can be completed later from results.parquet and the folder's ``mlflow-record/record.json``.

Idempotent by the tags the live tracker uses: the parent is found by ``clutune.sweep_dir`` and its role, each
child by ``clutune.trial_id``, a request by its step in the ``samples_processed`` history, an artifact by its
name. Run it twice and the second run writes nothing.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, RunTag

from clutune.errors import UserError
from clutune.guards.masking import mask
from clutune.guards.received_folder import ReceivedFolder
from clutune.platform.record.mlflow_filter import runs_with_tags
from clutune.platform.record.record_file import not_connecting, require_record
from clutune.platform.record.tracking import (
    PARENT_TAG,
    ROLE_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    ensure_experiment,
    request_metrics,
    resolve_tracking_uri,
)
from clutune.platform.run.log import Log, print_line

_BATCH = 900  # MLflow takes at most 1000 metrics per log_batch


@dataclass
class Synced:
    """What ``clutune.sync`` wrote: the store (its password masked), the parent run, and the counts it added (all
    zero when MLflow already held everything)."""

    uri: str
    parent_id: str
    runs_created: int = 0
    steps_logged: int = 0
    artifacts_logged: int = 0


def _results(folder: ReceivedFolder) -> pd.DataFrame:
    """Every row the folder holds, read (and checked to be a results table) before anything is written, so a
    junk file is one line, never a sync left halfway."""
    paths = [p for p in (folder.file("results.parquet"), folder.file("confirm/results.parquet")) if p is not None]
    if not paths:
        raise UserError(f"{folder.given} holds no results.parquet: nothing to sync")
    frames = []
    for path in paths:
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 (a received file may hold anything)
            line = str(e).splitlines()[0][:200] if str(e) else ""
            raise UserError(f"{path}: not a results table ({type(e).__name__}: {line})") from None
        missing = [c for c in ("request", "seed") if c not in frame]
        if missing:
            raise UserError(f"{path}: not a results table (no column {missing[0]!r})")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (numpy scalars are not ``int``/``bool`` to the metric filter)."""
    return [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()} for r in rows.to_dict("records")]


def _per_request(rows: pd.DataFrame, objectives: list[str], robust: float, single: bool) -> list[dict[str, Any]]:
    """What the live tracker logged per request: the row itself (``run``), or the trial's report (mean over
    seeds of every number, and each objective's running request mean over seeds with its std)."""
    rows = rows.sort_values(["request", "seed"])
    if single:
        return _records(rows)
    from clutune.platform.run.trainable import objective_name, seed_mean

    running = {
        m: rows.pivot_table(index="request", columns="seed", values=m, dropna=False).expanding().mean()
        for m in objectives
        if m in rows
    }
    out = []
    for k, frame in rows.groupby("request", sort=True):
        result = seed_mean(_records(frame))
        for m, table in running.items():
            values = table.loc[k].to_numpy(dtype=float)
            mean = float(np.mean(values))
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            result.update({f"mean_{m}": mean, f"std_{m}": std, objective_name(m): mean + robust * std})
        out.append(result)
    return out


def sync_folder(folder: Path, tracking_uri: str | None, log: Log = print_line) -> Synced:
    """Sync a folder, read as untrusted input: its record validated whole and its rows read before MLflow is
    opened; the store its record names is opened only when the user names it (``tracking_uri``)."""
    from mlflow.tracking import MlflowClient

    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    received = ReceivedFolder(folder)
    record = require_record(received)
    rows = _results(received)
    if record.get("uri") and tracking_uri is None:
        log(not_connecting("tracking store", record["uri"], "--tracking-uri"))
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        experiment_id = ensure_experiment(client, record["experiment"], uri)
    except Exception as e:  # noqa: BLE001
        raise UserError(mask(f"MLflow at {uri} did not answer: {str(e).splitlines()[0]}")) from None
    return _Sync(client, experiment_id, received, record, rows, Synced(mask(uri), "")).run()


class _Sync:
    def __init__(
        self,
        client: Any,
        experiment_id: str,
        received: ReceivedFolder,
        record: dict[str, Any],
        rows: pd.DataFrame,
        done: Synced,
    ) -> None:
        self.client, self.experiment_id, self.record, self.rows, self.done = client, experiment_id, record, rows, done
        self.received, self.folder = received, received.root
        self.role = record["role"]
        self.single = bool(record.get("single"))

    def _find(self, tags: dict[str, str]) -> list[Any]:
        return runs_with_tags(self.client, self.experiment_id, tags)

    def _create(self, name: str, tags: dict[str, str], params: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.done.runs_created += 1
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i : i + 100])
        return run.info.run_id

    def run(self) -> Synced:
        rec, sweep_dir = self.record, str(self.folder)
        found = self._find({SWEEP_TAG: sweep_dir, ROLE_TAG: self.role})
        tags = {SWEEP_TAG: sweep_dir, ROLE_TAG: self.role}
        if self.single:
            tags[TRIAL_TAG] = next(iter(rec["children"]))
        parent = found[0].info.run_id if found else self._create(rec["name"], tags, rec.get("params", {}))
        self.done.parent_id = parent
        self._texts(parent)
        rows = self.rows
        children = {}
        for trial, info in rec["children"].items():
            children[trial] = parent if self.single else self._child(parent, trial, info)
            mine = rows if self.single else rows[rows.get("trial_id", pd.Series(dtype=str)).astype(str) == trial]
            self._requests(children[trial], mine)
            if children[trial] != parent and self.client.get_run(children[trial]).info.status != "FINISHED":
                self.client.set_terminated(children[trial], status="FINISHED")
        for entry in rec.get("artifacts", []):
            run = parent if entry.get("trial") is None else children.get(entry["trial"])
            path = self._inside(entry.get("path"))
            if run and path is not None and path.is_file():
                self._artifact(run, path, entry.get("artifact_path"))
        for extra in ("curves.png", "summary.md"):  # study's own files, logged outside the tracker
            found = self.received.file(extra) if self.role == "study" else None
            if found is not None:
                self._artifact(parent, found, None)
        self._finish(parent)
        return self.done

    def _inside(self, named: Any) -> Path | None:
        """The artifact path a record names, resolved (links followed), when it lies inside the folder being
        synced; None, with a warning naming it, for anything outside: a record received from someone else must
        not make sync upload ``~/.aws/credentials`` to a tracking server."""
        if not isinstance(named, str):
            warnings.warn(
                f"{self.folder}: record.json names an artifact that is not a path: {named!r}; skipped", stacklevel=2
            )
            return None
        path = Path(named).resolve()
        if not path.is_relative_to(self.folder):
            warnings.warn(
                f"not uploading {named}: it lies outside {self.folder}, the folder being synced", stacklevel=2
            )
            return None
        return path

    def _child(self, parent: str, trial: str, info: dict[str, Any]) -> str:
        found = self._find({PARENT_TAG: parent, TRIAL_TAG: trial})
        if found:
            return found[0].info.run_id
        tags = {PARENT_TAG: parent, TRIAL_TAG: trial, SWEEP_TAG: str(self.folder), ROLE_TAG: info.get("role", "trial")}
        return self._create(info["name"], tags, info.get("params", {}))

    def _requests(self, run_id: str, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        seen = {m.step for m in self.client.get_metric_history(run_id, "samples_processed")}
        config = self.record.get("config") or {}
        robust = 0.0 if self.role in ("compare", "study") else float((config.get("sweep") or {}).get("robust", 0.0))
        pending: list[Metric] = []
        for result in _per_request(rows, list(self.record.get("objectives", [])), robust, self.single):
            if int(result["request"]) in seen:
                continue
            pending += request_metrics(result)[1]
            self.done.steps_logged += 1
        for i in range(0, len(pending), _BATCH):
            self.client.log_batch(run_id, metrics=pending[i : i + _BATCH])

    def _names(self, run_id: str, path: str | None) -> set[str]:
        return {Path(a.path).name for a in self.client.list_artifacts(run_id, path)}

    def _artifact(self, run_id: str, path: Path, artifact_path: str | None) -> None:
        if path.name not in self._names(run_id, artifact_path):
            self.client.log_artifact(run_id, str(path), artifact_path)
            self.done.artifacts_logged += 1

    def _texts(self, run_id: str) -> None:
        present = self._names(run_id, None)
        for name, text in self.record.get("texts", {}).items():
            if name not in present:
                self.client.log_text(run_id, text, name)
                self.done.artifacts_logged += 1

    def _finish(self, parent: str) -> None:
        finish = self.record.get("finish")
        if not finish:
            return
        data = self.client.get_run(parent).data
        metrics = [
            Metric(k, float(v), 0, 0)
            for k, v in finish["metrics"].items()
            if k not in data.metrics and math.isfinite(v)
        ]
        params = [Param(k, v) for k, v in finish["params"].items() if k not in data.params]
        tags = [RunTag(k, v) for k, v in finish["tags"].items() if data.tags.get(k) != v]
        if metrics or params or tags:
            self.client.log_batch(parent, metrics=metrics, params=params, tags=tags)
        if self.client.get_run(parent).info.status != "FINISHED":
            self.client.set_terminated(parent, status="FINISHED")


__all__ = ["Synced", "sync_folder"]
