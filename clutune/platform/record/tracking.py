"""MLflow as the record: a parent run per command (sweep, compare, study), a child run per trial, driver-written.

Only the driver writes, so a local sqlite file is safe even with many parallel trials. Runs are found again by
tags (the sweep folder on the parent, the Tune trial id on each child), so a resumed sweep continues the same
runs instead of duplicating them.

MLflow is the record, not the result: the folder (results.parquet) is. So every MLflow write fails soft: the
first failure (a server that does not answer, or dies mid-sweep) is remembered, later writes are skipped at no
cost, the work goes on, and the command ends non-zero naming the URI. What the tracker meant to write is kept
beside the results (``mlflow-record/record.json``) so ``clutune sync`` can write the missing part later.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag

from clutune.core.storage import write_local_atomic
from clutune.guards.masking import mask
from clutune.guards.uris import check_tracking_uri
from clutune.platform.record.mlflow_filter import runs_with_tags
from clutune.platform.run.runtime import bound_tracking_retries

SWEEP_TAG = "clutune.sweep_dir"
TRIAL_TAG = "clutune.trial_id"
ROLE_TAG = "clutune.role"
PARENT_TAG = "mlflow.parentRunId"
RECORD_DIR = "mlflow-record"
# Tune's bookkeeping, not measurements: kept out so a run's metrics are the results schema (plus objectives)
_SKIP = {
    "request",
    "requests_done",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "timestamp",
    "pid",
    "iterations_since_restore",
    "time_since_restore",
}
KIND_METRIC = "unlearn_request"  # 1 for an unlearn request: the results schema's ``kind``, as a number MLflow keeps
_FAILED: list[SweepTracker] = []


def resolve_tracking_uri(cli_value: str | None) -> str:
    """``--tracking-uri``, then MLFLOW_TRACKING_URI, then ./mlflow.db next to where the command runs; a scheme
    MLflow has no store for is refused here, before anything is opened or created."""
    if cli_value:
        return check_tracking_uri(cli_value)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return check_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return f"sqlite:///{Path('mlflow.db').resolve()}"


def flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


_flatten = flatten


def request_metrics(result: dict[str, Any]) -> tuple[int, list[Metric]]:
    """(step, metrics) of one per-request result: every finite number, bools as 0/1, ``kind`` as 0/1."""
    step = int(result["request"])
    ts = int(result.get("timestamp", 0) * 1000) or 0
    values: dict[str, float] = {}
    for k, v in result.items():
        if k in _SKIP or not isinstance(v, (int, float)):
            continue
        if isinstance(v, bool) or math.isfinite(v):
            values[k] = float(v)
    if isinstance(result.get("kind"), str):
        values[KIND_METRIC] = float(result["kind"] == "unlearn")
    return step, [Metric(k, v, ts, step) for k, v in values.items()]


def tracking_failures() -> list[str]:
    """One line per tracker whose MLflow writes failed in this process (the CLI turns them into the exit code)."""
    return [t.failure_line() for t in _FAILED]


@functools.cache
def store_errors() -> tuple[type[Exception], ...]:
    """What a tracking or artifact store raises when it is down or broken: MLflow's own errors (its REST and SQL
    stores wrap theirs), SQLAlchemy's (a locked or damaged sqlite file), the file system's and the network's
    (``OSError``, which ``requests``' errors are too), and S3's (botocore, installed whenever artifacts go to S3).
    Anything else is a bug in the caller, and must surface."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    errors: list[type[Exception]] = [MlflowException, SQLAlchemyError, OSError]
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    return tuple(errors)


class _SoftClient:
    """An MlflowClient whose calls never raise a store error: the first one marks the tracker down, later calls
    return None at once (an HTTP store would otherwise retry with back-off on every call). A name MlflowClient
    does not have, or a call with the wrong arguments, still raises: that is clutune's mistake, not an outage."""

    def __init__(self, tracker: SweepTracker, client: Any) -> None:
        self._tracker = tracker
        self._client = client

    def __getattr__(self, name: str) -> Any:
        from mlflow.tracking import MlflowClient

        method = getattr(self._client if self._client is not None else MlflowClient, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            tracker = self._tracker
            if self._client is None or tracker.error is not None:
                tracker.skipped += self._client is not None
                return None
            try:
                return method(*args, **kwargs)
            except store_errors() as e:
                tracker.fail(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                return None

        return call


class SweepTracker:
    """The driver's MLflow writer for one folder. ``enabled=False`` (``--no-tracking``) writes nothing at all."""

    def __init__(self, uri: str, experiment: str, sweep_dir: Path, enabled: bool = True) -> None:
        self.uri = uri
        self.enabled = enabled
        self.experiment = experiment
        self.sweep_dir = str(Path(sweep_dir).resolve())  # the tag ``clutune sync`` (which resolves) finds
        self.error: str | None = None
        self.skipped = 0
        self.parent_id = ""
        self.children: dict[str, str] = {}
        self.logged: dict[str, set[int]] = {}  # steps already in MLflow per trial: a replay after resume skips them
        self.record: dict[str, Any] = {"experiment": experiment, "uri": mask(uri), "children": {}, "artifacts": []}
        raw = None
        if enabled:
            if uri.startswith("http"):
                bound_tracking_retries()
            from mlflow.tracking import MlflowClient

            raw = MlflowClient(tracking_uri=uri)
        self.client: Any = _SoftClient(self, raw)
        self.experiment_id = ensure_experiment(self.client, experiment, uri) if enabled else None

    # ------------------------------------------------------------------ failure bookkeeping
    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
            _FAILED.append(self)

    def failure_line(self) -> str:
        return mask(
            f"MLflow at {self.uri} failed ({self.error}); {self.skipped} writes skipped. Every result is in "
            f"{self.sweep_dir}: run `clutune sync {self.sweep_dir} --tracking-uri {self.uri}` to complete the record"
        )

    def _save_record(self) -> None:
        folder = Path(self.sweep_dir) / RECORD_DIR
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(mask(self.record), indent=1, default=str)
        write_local_atomic(folder / "record.json", lambda tmp: tmp.write_text(text))

    def _find(self, tags: dict[str, str]) -> list[Any]:
        if self.experiment_id is None:
            return []
        return runs_with_tags(self.client, self.experiment_id, tags, max_results=1000)

    # ------------------------------------------------------------------ runs
    def start_parent(
        self, name: str, config: dict[str, Any], space: dict[str, Any], meta: dict[str, Any], role: str = "sweep"
    ) -> str:
        config, space, meta = mask(config), mask(space), mask(meta)  # no password reaches MLflow or a file
        params: dict[str, str] = {}
        flatten("", {k: v for k, v in config.items() if k != "scenario"}, params)
        flatten("", meta, params)
        texts = {"config.json": json.dumps(config, indent=1)}
        if space:
            texts["search_space.json"] = json.dumps(space, indent=1)
        previous = self._load_record()
        self.record.update(
            name=name,
            role=role,
            params=params,
            texts=texts,
            config=config,
            single=False,
            objectives=_objectives(config),
        )
        if previous.get("role") == role:
            self.record["children"] = previous.get("children", {})
            self.record["artifacts"] = previous.get("artifacts", [])
        self._save_record()
        if not self.enabled:
            return ""
        existing = self._find({SWEEP_TAG: self.sweep_dir, ROLE_TAG: role})
        if existing:
            self.parent_id = existing[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            for run in self._find({PARENT_TAG: self.parent_id}):
                trial_id = run.data.tags[TRIAL_TAG]
                self.children[trial_id] = run.info.run_id
                history = self.client.get_metric_history(run.info.run_id, "samples_processed") or []
                self.logged[trial_id] = {m.step for m in history}
            return self.parent_id
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={SWEEP_TAG: self.sweep_dir, ROLE_TAG: role}
        )
        if run is None:
            return ""
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, v[:6000]) for k, v in params.items()])
        for file_name, text in texts.items():
            self.client.log_text(self.parent_id, text, file_name)
        return self.parent_id

    def start_run(self, name: str, run_key: str, config: dict[str, Any], params: dict[str, Any]) -> str:
        """``clutune run``: one run, no parent; it is its own only "trial" (keyed by the results run_id)."""
        config, params = mask(config), mask(params)  # no password reaches MLflow or a file
        flat: dict[str, str] = {}
        flatten("", {k: v for k, v in config.items() if k != "scenario"}, flat)
        flat.update({k: str(v) for k, v in params.items()})
        self.record.update(
            name=name, role="run", params=flat, texts={"config.json": json.dumps(config, indent=1)}, config=config
        )
        self.record.update(single=True, objectives=[], children={run_key: {"name": name, "params": {}, "role": "run"}})
        self._save_record()
        if not self.enabled:
            self.children[run_key] = ""
            return ""
        tags = {SWEEP_TAG: self.sweep_dir, ROLE_TAG: "run", TRIAL_TAG: run_key}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.parent_id = run.info.run_id if run is not None else ""
        self.children[run_key] = self.parent_id
        self.client.log_batch(self.parent_id, params=[Param(k, v[:6000]) for k, v in flat.items()])
        self.client.log_text(self.parent_id, self.record["texts"]["config.json"], "config.json")
        return self.parent_id

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.record.setdefault("texts", {})[name] = text
        self._save_record()
        self.client.log_text(run_id, text, name)

    def log_artifact(self, trial_id: str | None, path: Path, artifact_path: str | None = None) -> None:
        """A file of the folder as an artifact of the parent (``trial_id`` None) or of a trial's child run."""
        entry = {"trial": trial_id, "path": str(Path(path).resolve()), "artifact_path": artifact_path}
        if entry not in self.record["artifacts"]:
            self.record["artifacts"].append(entry)
            self._save_record()
        run_id = self.parent_id if trial_id is None else self.children.get(trial_id, "")
        if run_id:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def child(self, trial_id: str, name: str, params: dict[str, Any], role: str = "trial") -> str:
        params = mask(params)
        if trial_id not in self.record["children"]:
            self.record["children"][trial_id] = {"name": name, "params": {k: str(v) for k, v in params.items()}}
            self.record["children"][trial_id]["role"] = role
            self._save_record()
        if trial_id in self.children:
            if self.children[trial_id]:
                self.client.update_run(self.children[trial_id], status="RUNNING")
            return self.children[trial_id]
        self.children[trial_id] = ""
        if not self.enabled or not self.parent_id:
            return ""
        tags = {PARENT_TAG: self.parent_id, TRIAL_TAG: trial_id, SWEEP_TAG: self.sweep_dir, ROLE_TAG: role}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        if run is None:
            return ""
        self.children[trial_id] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_request(self, trial_id: str, result: dict[str, Any]) -> None:
        """Per-request metrics with the request index as the step."""
        step, metrics = request_metrics(result)
        seen = self.logged.setdefault(trial_id, set())
        if step in seen:
            return
        seen.add(step)
        if self.children.get(trial_id):
            self.client.log_batch(self.children[trial_id], metrics=metrics)
        elif self.enabled:
            self.skipped += 1

    def end_child(self, trial_id: str, status: str) -> None:
        if self.children.get(trial_id) and self.children[trial_id] != self.parent_id:
            self.client.set_terminated(self.children[trial_id], status=status)

    def finish(self, summary: dict[str, Any], tables: dict[str, Any], plots: dict[str, Any]) -> None:
        """Best trial as parent metrics/params, summary tables and plots as artifacts (kept in the folder too)."""
        metrics = {f"best_{k}": float(v) for k, v in summary.get("best_metrics", {}).items()}
        metrics.update({k: float(v) for k, v in summary.get("metrics", {}).items() if math.isfinite(v)})
        params = {f"best.{k}": str(v) for k, v in summary.get("best_params", {}).items()}
        params.update(summary.get("params", {}))
        tags = {"clutune.best_trial": str(summary.get("best_trial", ""))}
        self.record["finish"] = {"metrics": metrics, "params": params, "tags": tags}
        folder = Path(self.sweep_dir) / RECORD_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            write_local_atomic(folder / name, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
            self.log_artifact(None, folder / name)
        for name, fig in plots.items():
            (Path(self.sweep_dir) / "plots").mkdir(parents=True, exist_ok=True)
            path = Path(self.sweep_dir) / "plots" / name
            write_local_atomic(path, lambda tmp, fig=fig: fig.savefig(tmp, dpi=100, format="png"))
            self.log_artifact(None, path)
        self._save_record()
        if self.parent_id:
            self.client.log_batch(
                self.parent_id,
                metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
                tags=[RunTag(k, v) for k, v in tags.items()],
            )
            self.client.set_terminated(self.parent_id, status="FINISHED")

    def fail_parent(self) -> None:
        """The command failed: its parent run says so (a ``--resume`` that finishes marks it FINISHED)."""
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status="FAILED")

    def _load_record(self) -> dict[str, Any]:
        path = Path(self.sweep_dir) / RECORD_DIR / "record.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}


def ensure_experiment(client: Any, experiment: str, uri: str) -> str | None:
    """The experiment's id, created on first use. With a sqlite store the artifacts live in ``mlruns/`` next to
    the database file, so the store is one folder a user can move or send, whatever the command's cwd."""
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).resolve().parent / "mlruns").as_uri()
    return client.create_experiment(experiment, artifact_location=location)


def _objectives(config: dict[str, Any]) -> list[str]:
    return list((config.get("sweep") or {}).get("objectives") or [])
