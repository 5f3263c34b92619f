"""A real ``mlflow server`` on 127.0.0.1 (sqlite backend, artifacts proxied to its own artifact root, as on a
cluster's head node): a sweep given ``--tracking-uri http://127.0.0.1:PORT`` records its parent run, one child
per trial with every request as a step, and its artifacts, all through the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from clutune.cli import main


def _serve(db: Path, artifacts: Path, port: int) -> subprocess.Popen:
    """The README's head-node command, on a free port with one worker (a test machine's share)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}"]
    cmd += ["--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("mlflow server did not start")


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_sweep_records_runs_and_artifacts_on_a_tracking_server(
    local_ray, tmp_path, monkeypatch, free_port, tiny_scenario, fast_sets
):
    monkeypatch.chdir(tmp_path)
    oracle, sweep = {"epochs": 3, "cache_dir": str(tmp_path / "oracles")}, {"storage_path": str(tmp_path / "sweeps")}
    config = tiny_scenario(tmp_path, "tiny-server", oracle=oracle, sweep={**sweep, "asha": False}, file="tiny")
    port = free_port()
    (tmp_path / "server").mkdir()
    server = _serve(tmp_path / "server" / "mlflow.db", tmp_path / "server" / "artifacts", port)
    uri = f"http://127.0.0.1:{port}"
    try:
        argv = ["sweep", "--config", str(config), "--method", "ugclu", "--trials", "2", "--tracking-uri", uri]
        assert main(argv + fast_sets) == 0
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("tiny-server").experiment_id])
        parents = [r for r in runs if r.data.tags["clutune.role"] == "sweep"]
        children = [r for r in runs if r.data.tags["clutune.role"] == "trial"]
        assert len(parents) == 1 and len(children) == 2
        assert all(c.info.status == "FINISHED" for c in children)
        for child in children:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "kl_oracle_all")]
            assert steps == [0, 1, 2, 3]
        parent = parents[0].info.run_id
        artifacts = {a.path for a in client.list_artifacts(parent)}
        assert {"config.json", "search_space.json", "trials.csv"} <= artifacts, artifacts
        text = Path(client.download_artifacts(parent, "trials.csv", str(tmp_path / "got"))).read_text()
        assert text.startswith("trial_id,number,status")  # the trials table, one row per trial in search order
        # the artifacts went through the server into its own artifact root, not to a path of the driver's
        stored = {p.name for p in (tmp_path / "server" / "artifacts").rglob("*") if p.is_file()}
        assert {"config.json", "trials.csv"} <= stored
        assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
