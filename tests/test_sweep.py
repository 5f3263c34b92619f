"""A real sweep: local Ray, Optuna, MLflow on sqlite; oracles trained once; resume after a killed driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

import clutune
from clutune.errors import UserError

FAST = [
    "oracle.epochs=10",
    "epochs_per_learn=3",  # bare: holds for every trial
    "methods.ugclu.iters_per_unlearn=20",
    "sweep.asha=false",
]


def _sets(tmp: Path) -> list[str]:
    return FAST + [f"oracle.cache_dir={tmp / 'oracles'}", f"sweep.storage_path={tmp / 'sweeps'}"]


def _runs(uri: str, experiment: str) -> tuple[list, list]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("clutune.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("clutune.role") == "trial"]
    return parents, children


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_sweep_records_trials_and_trains_each_oracle_once(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = clutune.sweep(
        "digits-agnostic-class", method="ugclu", trials=4, overrides=_sets(tmp_path), tracking_uri=uri
    )

    assert summary.oracles_total == 8  # every request changes the owned set
    assert summary.oracles_trained == 8
    cached = [p for p in (tmp_path / "oracles").iterdir() if not p.name.startswith(".") and p.name != "leases"]
    assert len(cached) == 8
    assert len(summary.trials) == 4 and (summary.trials["requests_done"] == 8).all()

    parents, children = _runs(uri, "digits-agnostic-class")
    assert len(parents) == 1 and len(children) == 4
    parent_id = parents[0].info.run_id
    assert all(c.data.tags["mlflow.parentRunId"] == parent_id for c in children)
    assert all(c.info.status == "FINISHED" for c in children)
    client = MlflowClient(uri)
    for child in children:
        assert {"gamma", "beta_R", "K_in", "buffer_size"} <= set(child.data.params)
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "kl_oracle_all")]
        assert steps == list(range(8))
    assert "best_objective_kl_oracle_all" in client.get_run(parent_id).data.metrics
    assert client.get_run(parent_id).data.params["fixed.epochs_per_learn"] == "3"
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"trials.csv", "config.json", "search_space.json", "kl_oracle_all_per_request.png"} <= artifacts
    rows = pq.read_table(summary.sweep_dir / "results.parquet").to_pylist()
    first = [r for r in rows if r["request"] == 0]
    assert len(first) == 4 and all(r["samples_processed"] == 3 * 269 for r in first)  # 3 epochs over task 0
    # Tune keeps statistics of every number a result carries, in every experiment-state snapshot: it gets the
    # objectives, while the metrics go to results.parquet and MLflow (above) through the driver.
    tune_columns = set(pd.read_csv(next(summary.sweep_dir.glob("clu_trainable_*/progress.csv"))).columns)
    assert {"objective_kl_oracle_all", "requests_done", "request"} <= tune_columns
    assert not tune_columns & {"acc_test", "kl_oracle_remain", "samples_processed"}

    # The same scenario again, in a new sweep folder: every oracle comes from the cache.
    again = [*_sets(tmp_path), f"sweep.storage_path={tmp_path / 'sweeps2'}"]
    second = clutune.sweep("digits-agnostic-class", method="ugclu", trials=1, overrides=again, tracking_uri=uri)
    assert second.oracles_trained == 0 and second.oracles_total == 8


def test_sweep_refuses_unknown_bare_hyperparameter(tmp_path):
    with pytest.raises(UserError, match="gama"):
        clutune.sweep("digits-agnostic-class", method="ugclu", trials=2, overrides=[*_sets(tmp_path), "gama=2"])
    assert not (tmp_path / "sweeps").exists()


def test_sweep_refuses_bad_space_before_starting(tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("method: ugclu\nparams:\n  gamma: {type: float, low: 5, high: 1}\n")
    with pytest.raises(UserError, match="params.gamma: low"):
        clutune.sweep("digits-agnostic-class", method="ugclu", trials=2, overrides=_sets(tmp_path), space=str(space))
    space.write_text("method: ugclu\nparams:\n  gama: {type: float, low: 0.1, high: 1}\n")
    with pytest.raises(UserError, match="no hyperparameter 'gama'"):
        clutune.sweep("digits-agnostic-class", method="ugclu", trials=2, overrides=_sets(tmp_path), space=str(space))
    assert not (tmp_path / "sweeps").exists()


def _driver_stacks(pid: int) -> str:
    spy = Path(sys.executable).parent / "py-spy"  # installed with ray[default]
    if not spy.exists():
        return "(py-spy not installed)"
    dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
    return dump.stdout + dump.stderr


@pytest.mark.slow  # a driver killed mid-sweep, then resumed
def test_resume_after_killed_driver(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [str(Path(sys.executable).parent / "clutune"), "sweep", "--config", "digits-agnostic-class"]
    cmd += ["--method", "ugclu", "--trials", "4", "--concurrency", "1", "--num-cpus", "2", "--tracking-uri", uri]
    for s in _sets(tmp_path):
        cmd += ["--set", s]
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    finished = 0
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("trial ") and " finished " in line:
            finished += 1
            if finished == 2:
                break
    assert finished == 2, "".join(lines[-30:])
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    resumed = subprocess.Popen(
        cmd + ["--resume"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        out, _ = resumed.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        stacks = _driver_stacks(resumed.pid)  # a hang is only diagnosable from where the driver waits
        resumed.kill()
        out, _ = resumed.communicate()
        pytest.fail(f"the resumed sweep did not finish in 600 s; its driver's stacks:\n{stacks}\n{out[-3000:]}")
    assert resumed.returncode == 0, out[-6000:]
    parents, children = _runs(uri, "digits-agnostic-class")
    assert len(parents) == 1
    trial_ids = [c.data.tags["clutune.trial_id"] for c in children]
    assert len(trial_ids) == len(set(trial_ids)) == 4
    assert all(c.info.status == "FINISHED" for c in children)
    client = MlflowClient(uri)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "kl_oracle_all")]
        assert steps == list(range(8)), steps


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_a_diverging_trial_fails_alone(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "wild.yaml"
    space.write_text(
        "method: ugclu\nparams:\n  alpha0_unlearn: {type: float, low: 1.0e+4, high: 1.0e+5, log: true}\n"
        "  clip: {type: categorical, choices: [0.0]}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [*_sets(tmp_path), "methods.ugclu.beta_R=0.5", "methods.ugclu.K_in=0"]
    summary = clutune.sweep(
        "digits-agnostic-class", method="ugclu", trials=2, overrides=sets, space=str(space), tracking_uri=uri
    )
    assert (summary.trials["status"] == "DIVERGED").all(), summary.trials
    assert summary.best == {}
    _, children = _runs(uri, "digits-agnostic-class")
    assert len(children) == 2
    assert all(c.info.status == "FAILED" and "not finite" in c.data.tags["clutune.diverged"] for c in children)
