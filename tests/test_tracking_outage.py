"""MLflow is the record, not the result: a real ``mlflow server`` stopped mid-sweep loses nothing measured, the
sweep exits non-zero naming the URI, and ``clutune sync`` then completes the record without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_browsing import N_REQUESTS, runs_of, write_scenario

from clutune.cli import main


def _start_server(db: Path, artifacts: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}", "--workers", "1"]
    cmd += ["--default-artifact-root", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("mlflow server did not start")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)  # the server's own session: its uvicorn worker goes too
    proc.wait(timeout=30)


@pytest.mark.slow  # a tracking server stopped mid-sweep, the record then completed by sync
def test_server_stopped_mid_sweep_loses_nothing_and_sync_completes(
    tmp_path, capsys, free_port, tiny_scenario, fast_sets
):
    config = write_scenario(tiny_scenario, tmp_path)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path / "mlflow.db", tmp_path / "artifacts", port)
    sweep_dir = tmp_path / "sweeps" / "tiny-browse-ugclu"
    cmd = [sys.executable, "-m", "clutune.cli", "sweep", "--config", str(config), "--method", "ugclu"]
    cmd += ["--trials", "2", "--concurrency", "1", "--tracking-uri", uri, "--num-cpus", "1"]
    cmd += fast_sets
    sweep = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # stop the server once the first request of the first trial is on disk
            if any(p.stat().st_size > 0 for p in (sweep_dir / "parts").glob("*.arrows")) or sweep.poll() is not None:
                break
            time.sleep(0.1)
        _stop(server)
        stdout, stderr = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 3, stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("clutune: error:")]
    assert len(errors) == 1 and errors[0] == stderr.strip().splitlines()[-1], stderr  # one line, the last
    assert errors[0].startswith("clutune: error: MLflow at " + uri) and f"clutune sync {sweep_dir}" in errors[0]
    rows = pd.read_parquet(sweep_dir / "results.parquet")
    assert len(rows) == 2 * N_REQUESTS and rows["trial_id"].nunique() == 2  # every result on disk
    assert (sweep_dir / "trials.csv").exists() and any((sweep_dir / "plots").glob("*/accuracy_matrix.png"))

    server = _start_server(tmp_path / "mlflow.db", tmp_path / "artifacts", port)
    try:
        capsys.readouterr()
        for _ in range(2):  # the second sync finds nothing missing (in-process: the CLI's main, without a
            assert main(["sync", str(sweep_dir), "--tracking-uri", uri]) == 0  # 10 s interpreter start each)
        first, second = [line for line in capsys.readouterr().out.splitlines() if line.startswith("synced ")]
        assert "0 runs created, 0 request steps and 0 artifacts written" not in first, first
        assert "0 runs created, 0 request steps and 0 artifacts written" in second, second
        runs = runs_of(uri, "tiny-browse")
        parents = [r for r in runs if r.data.tags.get("clutune.role") == "sweep"]
        children = [r for r in runs if r.data.tags.get("clutune.role") == "trial"]
        assert len(parents) == 1 and len(children) == 2
        client = MlflowClient(uri)
        for child in children:
            assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "kl_oracle_all")]
            assert sorted(steps) == list(range(N_REQUESTS)), steps  # each request once: no duplicates
            mine = rows[rows["trial_id"] == child.data.tags["clutune.trial_id"]].sort_values("request")
            values = [
                m.value
                for m in sorted(client.get_metric_history(child.info.run_id, "kl_oracle_all"), key=lambda m: m.step)
            ]
            assert values == mine["kl_oracle_all"].tolist()
            assert child.info.status == "FINISHED"
        assert parents[0].info.status == "FINISHED"
        assert "best_objective_kl_oracle_all" in parents[0].data.metrics
        names = {Path(a.path).name for a in client.list_artifacts(parents[0].info.run_id, "plots")}
        assert "optuna_history.html" in names
    finally:
        _stop(server)
