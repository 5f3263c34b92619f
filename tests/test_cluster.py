"""A real two-node Ray cluster on this machine (``ray start`` head + ``ray start --address`` worker, each with its
own custom resource): a sweep with ``--address`` spreads trials and oracle tasks over both nodes and writes only
to its shared folder and its own paths; the same sweep submitted as a Ray job; and a node lost mid-sweep, which
the sweep survives without a duplicated row or a partial oracle. One cluster serves the file (the lost-node
test, which kills the worker, runs last); it is torn down, with every process it started, however tests end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from local_cluster import CLUSTER_ENV, LocalCluster, local_cluster
from mlflow.tracking import MlflowClient

from clutune.core.results import read_parts

pytestmark = pytest.mark.slow  # a real two-node Ray cluster (ray start head and worker)

CLUTUNE = str(Path(sys.executable).parent / "clutune")
# Four more requests for the sweeps that must outlast a lost node.
LONGER = [{"unlearn": {"classes": [3, 5]}}, {"learn": {"task": 3}}, {"learn": {"task": 4}}]
LONGER += [{"unlearn": {"classes": [7]}}]
# A trial or an oracle task takes a whole node (two CPUs), so two at once can only run on two nodes; every trial
# gets a fresh worker, so the second trial waits for the node the oracles free instead of reusing the first's.
WHOLE_NODE = ["sweep.trial_resources.cpu=2", "sweep.oracle_resources.cpu=2", "sweep.reuse_actors=false"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, free_port):
    """Head and worker, two CPUs each, every node with its own HOME and working folder (both must stay empty)."""
    tmp = tmp_path_factory.mktemp("cluster")
    homes = {name: tmp / f"{name}-home" for name in ("head", "worker")}
    with local_cluster(free_port) as c:
        for name, home in homes.items():
            home.mkdir()
            cwd = tmp / f"{name}-cwd"
            cwd.mkdir()
            c.env["HOME"] = str(home)  # read when the node starts; each node gets its own
            c.start_node(name, cpus=2, head=name == "head", cwd=cwd)
            c.wait_for_nodes(2 if name == "worker" else 1)
        c.env.pop("HOME")
        yield {"cluster": c, "tmp": tmp, "nodes": _node_ids(c)}


def _node_ids(c: LocalCluster) -> dict[str, str]:
    """Node name (its custom resource) -> Ray node id, from the dashboard's REST API."""
    with urllib.request.urlopen(f"{c.dashboard}/nodes?view=summary", timeout=10) as r:
        nodes = json.load(r)["data"]["summary"]
    found = {}
    for node in nodes:
        resources = node["raylet"].get("resourcesTotal", {})
        for name in ("head", "worker"):
            if name in resources and node["raylet"]["state"] == "ALIVE":
                found[name] = node["raylet"]["nodeId"]
    assert set(found) == {"head", "worker"}, nodes
    return found


def _config(tiny_scenario, folder: Path, name: str, longer: bool = False) -> Path:
    more = LONGER if longer else []
    return tiny_scenario(folder, name, oracle={"epochs": 3}, sweep={"asha": False}, extra_requests=more)


def _sweep_cmd(config: Path, shared: Path, trials: int, extra: list[str], fast_sets: list[str]) -> list[str]:
    cmd = [CLUTUNE, "sweep", "--config", str(config), "--method", "ugclu", "--trials", str(trials)]
    cmd += [
        "--set",
        f"sweep.storage_path={shared.as_uri()}/sweeps",
        "--set",
        f"oracle.cache_dir={shared.as_uri()}/oracles",
    ]
    return cmd + fast_sets + [a for s in WHOLE_NODE for a in ("--set", s)] + extra


def _driver_env(home: Path) -> dict[str, str]:
    return {**os.environ, **CLUSTER_ENV, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _runs(uri: str, experiment: str) -> tuple[list, list]:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=100)
    return [r for r in runs if r.data.tags["clutune.role"] == "sweep"], [
        r for r in runs if r.data.tags["clutune.role"] == "trial"
    ]


def _assert_whole_cache(cache: Path) -> None:
    """Every entry is committed and loads; nothing half-written lies anywhere in the cache."""
    entries = [p for p in cache.iterdir() if p.name != "leases"]
    assert entries and all(not p.name.startswith(".") for p in entries), sorted(p.name for p in cache.iterdir())
    for entry in entries:
        assert sorted(f.name for f in entry.iterdir()) == ["meta.json", "outputs.pt"], entry
        json.loads((entry / "meta.json").read_text())
        assert set(torch.load(entry / "outputs.pt", weights_only=True)) == {
            "logits_train",
            "logits_test",
            "trained_ids",
        }


def test_sweep_runs_trials_and_oracles_on_both_nodes_and_writes_only_its_paths(cluster, tiny_scenario, fast_sets):
    c, tmp, nodes = cluster["cluster"], cluster["tmp"], cluster["nodes"]
    shared, driver, home = tmp / "shared", tmp / "driver", tmp / "driver-home"
    for folder in (shared, driver, home):
        folder.mkdir()
    uri = f"sqlite:///{driver / 'mlflow.db'}"
    extra = ["--concurrency", "2", "--address", c.address]
    cmd = _sweep_cmd(_config(tiny_scenario, tmp, "spread", longer=True), shared, 4, extra, fast_sets)
    done = subprocess.run(
        cmd + ["--tracking-uri", uri], cwd=driver, env=_driver_env(home), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = pq.read_table(shared / "sweeps" / "spread-ugclu" / "results.parquet").to_pylist()
    assert len(rows) == 4 * 8 and len({(r["trial_id"], r["request"]) for r in rows}) == 32
    assert {r["node_id"] for r in rows} == set(nodes.values()), "trials did not run on both nodes"
    assert {r["oracle_node_id"] for r in rows} == set(nodes.values()), "oracle tasks did not run on both nodes"
    assert all(r["hostname"] and r["oracle_hostname"] for r in rows)

    parents, children = _runs(uri, "spread")
    assert len(parents) == 1 and len(children) == 4
    assert all(ch.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for ch in children)
    assert all(ch.info.status == "FINISHED" for ch in children)

    # Nothing outside the shared folder and the sweep's own paths: the driver's folder holds only the MLflow
    # store, and no HOME and no node's working folder got a file.
    assert {p.name for p in shared.iterdir()} == {"sweeps", "oracles"}
    assert {p.name for p in driver.iterdir()} <= {"mlflow.db", "mlruns"}
    plotting = {".cache", ".cache/matplotlib", ".config", ".config/matplotlib"}  # the driver draws the sweep's plots
    assert {f for f in _files(home) if not f.startswith(".cache/matplotlib/")} <= plotting, _files(home)
    for folder in (*(tmp / f"{n}-home" for n in nodes), *(tmp / f"{n}-cwd" for n in nodes)):
        assert _files(folder) == set(), (folder, _files(folder))
    _assert_whole_cache(shared / "oracles")


def test_sweep_as_a_ray_job(cluster, tiny_scenario, fast_sets):
    c, tmp = cluster["cluster"], cluster["tmp"]
    shared = tmp / "job-shared"
    shared.mkdir()
    uri = f"sqlite:///{shared / 'mlflow.db'}"
    sweep = _sweep_cmd(_config(tiny_scenario, tmp, "job"), shared, 2, ["--tracking-uri", uri], fast_sets)
    env = {**os.environ, **CLUSTER_ENV}
    ray = str(Path(sys.executable).parent / "ray")
    submit = [ray, "job", "submit", "--address", c.dashboard, "--no-wait", "--submission-id", "clutune-job", "--"]
    out = subprocess.run(submit + sweep, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    status = ""
    for _ in range(600):
        with urllib.request.urlopen(f"{c.dashboard}/api/jobs/clutune-job", timeout=10) as r:
            status = json.load(r)["status"]
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(0.5)
    logs = subprocess.run([ray, "job", "logs", "--address", c.dashboard, "clutune-job"], env=env, capture_output=True)
    assert status == "SUCCEEDED", logs.stdout.decode()[-3000:]
    assert "sweep finished" in logs.stdout.decode()
    rows = pq.read_table(shared / "sweeps" / "job-ugclu" / "results.parquet").to_pylist()
    assert len({r["trial_id"] for r in rows}) == 2 and {r["request"] for r in rows} == set(range(4))
    parents, children = _runs(uri, "job")
    assert len(parents) == 1 and len(children) == 2


def test_a_lost_node_costs_no_trial_no_duplicate_and_no_partial_oracle(cluster, tiny_scenario, fast_sets):
    c, tmp, nodes = cluster["cluster"], cluster["tmp"], cluster["nodes"]
    shared, driver = tmp / "lost-shared", tmp / "lost-driver"
    shared.mkdir()
    driver.mkdir()
    uri = f"sqlite:///{driver / 'mlflow.db'}"
    n_requests = 8
    extra = ["--concurrency", "2", "--address", c.address, "--set", "epochs_per_learn=2"]
    extra += ["--set", "sweep.checkpoint_every=1"]  # every report carries a checkpoint
    cmd = _sweep_cmd(_config(tiny_scenario, tmp, "lost", longer=True), shared, 4, extra, fast_sets)
    sweep = subprocess.Popen(
        cmd + ["--tracking-uri", uri], cwd=driver, env=_driver_env(driver), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    sweep_dir = shared / "sweeps" / "lost-ugclu"
    try:
        lost_at = None
        for _ in range(1200):  # the worker dies once one of its trials is past its first request, not yet done
            if sweep.poll() is not None:
                break
            on_worker = (
                [r for r in read_parts(sweep_dir) if r["node_id"] == nodes["worker"]] if sweep_dir.exists() else []
            )
            if on_worker:
                lost_at = max(r["request"] for r in on_worker)
                checkpointed = {r["trial_id"] for r in on_worker}  # each report carried a checkpoint
                c.kill("worker")
                break
            time.sleep(0.1)
        output, _ = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert lost_at is not None and lost_at < n_requests - 1, output[-3000:]
    assert sweep.returncode == 0, output[-4000:]

    rows = pq.read_table(sweep_dir / "results.parquet").to_pylist()
    keys = [(r["trial_id"], r["request"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4 * n_requests  # every trial reached its last request, once each
    parts = read_parts(sweep_dir)
    restarted = {r["trial_id"] for r in parts if r["node_id"] == nodes["worker"]}
    assert all(
        r["node_id"] == nodes["head"] for r in rows if r["trial_id"] in restarted and r["request"] == n_requests - 1
    )
    # a trial lost after a checkpoint went on from it: its first request was measured once, not again
    assert all(sum(r["trial_id"] == t and r["request"] == 0 for r in parts) == 1 for t in checkpointed)

    parents, children = _runs(uri, "lost")
    assert len(parents) == 1 and len(children) == 4
    client = MlflowClient(uri)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "kl_oracle_all")]
        assert steps == list(range(n_requests)), steps  # no request logged twice
    _assert_whole_cache(shared / "oracles")
