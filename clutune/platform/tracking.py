"""MLflow as the record: a parent run per command (sweep, compare, study), a child run per trial, driver-written.

Only the driver writes, so a local sqlite file is safe even with many parallel trials. Runs are found again by
tags (the sweep folder on the parent, the Tune trial id on each child), so a resumed sweep continues the same
runs instead of duplicating them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

SWEEP_TAG = "clutune.sweep_dir"
TRIAL_TAG = "clutune.trial_id"
PARENT_TAG = "mlflow.parentRunId"
_SKIP = {"request", "requests_done", "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid"}


def resolve_tracking_uri(cli_value: str | None) -> str:
    """``--tracking-uri``, then MLFLOW_TRACKING_URI, then ./mlflow.db next to where the command runs."""
    if cli_value:
        return cli_value
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path('mlflow.db').resolve()}"


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


class SweepTracker:
    def __init__(self, uri: str, experiment: str, sweep_dir: Path) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = Path("mlruns").resolve().as_uri() if uri.startswith("sqlite:") else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = found.experiment_id
        self.sweep_dir = str(sweep_dir)
        self.parent_id = ""
        self.children: dict[str, str] = {}
        self.logged: dict[str, set[int]] = {}  # steps already in MLflow per trial: a replay after resume skips them

    def _find(self, filter_string: str) -> list[Any]:
        return self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=1000)

    def start_parent(
        self, name: str, config: dict[str, Any], space: dict[str, Any], meta: dict[str, Any], role: str = "sweep"
    ) -> str:
        existing = self._find(f"tags.`{SWEEP_TAG}` = '{self.sweep_dir}' and tags.`clutune.role` = '{role}'")
        if existing:
            self.parent_id = existing[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            for run in self._find(f"tags.`{PARENT_TAG}` = '{self.parent_id}'"):
                trial_id = run.data.tags[TRIAL_TAG]
                self.children[trial_id] = run.info.run_id
                history = self.client.get_metric_history(run.info.run_id, "samples_processed")
                self.logged[trial_id] = {m.step for m in history}
            return self.parent_id
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={SWEEP_TAG: self.sweep_dir, "clutune.role": role}
        )
        self.parent_id = run.info.run_id
        params: dict[str, str] = {}
        _flatten("", {k: v for k, v in config.items() if k != "scenario"}, params)
        _flatten("", meta, params)
        self.client.log_batch(self.parent_id, params=[Param(k, v[:6000]) for k, v in params.items()])
        self.log_text(self.parent_id, json.dumps(config, indent=1), "config.json")
        if space:
            self.log_text(self.parent_id, json.dumps(space, indent=1), "search_space.json")
        return self.parent_id

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def child(self, trial_id: str, name: str, params: dict[str, Any], role: str = "trial") -> str:
        if trial_id in self.children:
            self.client.update_run(self.children[trial_id], status="RUNNING")
            return self.children[trial_id]
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={PARENT_TAG: self.parent_id, TRIAL_TAG: trial_id, SWEEP_TAG: self.sweep_dir, "clutune.role": role},
        )
        self.children[trial_id] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_request(self, trial_id: str, result: dict[str, Any]) -> None:
        """Per-request metrics with the request index as the step."""
        step = int(result["request"])
        seen = self.logged.setdefault(trial_id, set())
        if step in seen:
            return
        seen.add(step)
        ts = int(result.get("timestamp", 0) * 1000) or 0
        metrics = [
            Metric(k, float(v), ts, step)
            for k, v in result.items()
            if k not in _SKIP and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        self.client.log_batch(self.children[trial_id], metrics=metrics)

    def end_child(self, trial_id: str, status: str) -> None:
        if trial_id in self.children:
            self.client.set_terminated(self.children[trial_id], status=status)

    def finish(self, summary: dict[str, Any], tables: dict[str, Any], plots: dict[str, Any]) -> None:
        """Best trial as parent metrics/params, summary tables and plots as artifacts."""
        metrics = [Metric(f"best_{k}", float(v), 0, 0) for k, v in summary.get("best_metrics", {}).items()]
        metrics += [Metric(k, float(v), 0, 0) for k, v in summary.get("metrics", {}).items() if math.isfinite(v)]
        params = [Param(f"best.{k}", str(v)) for k, v in summary.get("best_params", {}).items()]
        tags = [RunTag("clutune.best_trial", str(summary.get("best_trial", "")))]
        self.client.log_batch(self.parent_id, metrics=metrics, params=params, tags=tags)
        with tempfile.TemporaryDirectory() as folder:
            for name, frame in tables.items():
                path = Path(folder) / name
                frame.to_csv(path, index=False)
                self.client.log_artifact(self.parent_id, str(path))
            for name, fig in plots.items():
                self.client.log_figure(self.parent_id, fig, name)
        self.client.set_terminated(self.parent_id, status="FINISHED")
