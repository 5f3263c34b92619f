"""Browsing results: every command in MLflow (real sqlite), plots people read, the offline report, the export,
``clutune dashboard`` on loopback. One small store (a 2-trial sweep and a 2-method compare) serves them all."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from clutune.cli import main
from clutune.platform.plots import METHOD_PLOTS, PLOT_PX, RUN_PLOTS

SCENARIO = """
name: tiny-browse
dataset: {name: digits}
model: {name: mlp, hidden: [32]}
oracle: {epochs: 3, cache_dir: CACHE}
sweep: {storage_path: SWEEPS, asha: false, objectives: [kl_oracle_all, avg_gap]}
scenario:
  requests:
    - learn: {task: 0}
    - learn: {task: 1}
    - unlearn: {classes: [1]}
    - learn: {task: 2}
"""
FAST = ["epochs_per_learn=1", "iters_per_unlearn=10", "buffer_size=50"]
N_REQUESTS = 4


def write_scenario(tmp: Path) -> Path:
    path = tmp / "tiny.yaml"
    path.write_text(SCENARIO.replace("CACHE", str(tmp / "oracles")).replace("SWEEPS", str(tmp / "sweeps")))
    return path


def sets(extra: list[str] | None = None) -> list[str]:
    return [a for s in FAST + (extra or []) for a in ("--set", s)]


def assert_png(path: Path) -> None:
    """A valid PNG of the stated size with more than one colour (not a blank canvas)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == PLOT_PX, (path, image.size)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [0, 0]) > 1, path


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture(scope="module")
def store(local_ray, tmp_path_factory):
    """A finished 2-trial sweep and a 2-method compare, recorded in one sqlite store."""
    tmp = tmp_path_factory.mktemp("store")
    config = write_scenario(tmp)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    sweep = ["sweep", "--config", str(config), "--method", "ugclu", "--trials", "2", "--tracking-uri", uri]
    assert main(sweep + sets()) == 0
    compare = ["compare", "--config", str(config), "--methods", "ugclu,finetune", "--seeds", "0"]
    assert main(compare + ["--out", str(tmp / "compare"), "--tracking-uri", uri] + sets()) == 0
    return {"tmp": tmp, "uri": uri, "sweep": tmp / "sweeps" / "tiny-browse-ugclu", "compare": tmp / "compare"}


def test_run_records_one_mlflow_run_with_plots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_scenario(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    assert (
        main(["run", "--config", str(config), "--method", "ugclu", "--out", str(out), "--tracking-uri", uri] + sets())
        == 0
    )
    rows = pd.read_parquet(out / "results.parquet")
    (run,) = runs_of(uri, "tiny-browse")
    assert run.data.tags["clutune.role"] == "run" and run.info.status == "FINISHED"
    assert run.data.tags["clutune.trial_id"] == rows["run_id"].iloc[0]
    assert run.data.params["method"] == "ugclu" and run.data.params["oracle.epochs"] == "3"
    client = MlflowClient(uri)
    history = client.get_metric_history(run.info.run_id, "kl_oracle_all")
    assert [m.step for m in history] == list(range(N_REQUESTS))
    assert [m.value for m in history] == pytest.approx(rows["kl_oracle_all"].tolist())
    for t in range(5):  # the accuracy matrix's cells are in the results schema, and in MLflow
        assert f"acc_task_{t}" in rows and f"oracle_acc_task_{t}" in run.data.metrics
    folder = out / "plots" / rows["run_id"].iloc[0]
    for name in RUN_PLOTS:
        assert_png(folder / name)
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert logged == set(RUN_PLOTS)


def test_no_tracking_writes_results_and_plots_but_no_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_scenario(tmp_path)
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--method", "ugclu", "--out", str(out), "--no-tracking"] + sets()) == 0
    assert (out / "results.parquet").exists() and any((out / "plots").glob("*/accuracy_matrix.png"))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_compare_and_sweep_record_parent_children_and_plots(store):
    uri, client = store["uri"], MlflowClient(store["uri"])
    runs = runs_of(uri, "tiny-browse")
    by_role: dict[str, list] = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("clutune.role"), []).append(r)
    assert len(by_role["sweep"]) == 1 and len(by_role["trial"]) == 2
    assert len(by_role["compare"]) == 1 and len(by_role["run"]) == 2
    compare_parent = by_role["compare"][0].info.run_id
    for child in by_role["run"]:
        assert child.data.tags["mlflow.parentRunId"] == compare_parent
        assert {"method", "seed"} <= set(child.data.params)
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "kl_oracle_all")]
        assert steps == list(range(N_REQUESTS))
        assert {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "plots")} == set(RUN_PLOTS)
    parent_plots = {Path(a.path).name for a in client.list_artifacts(compare_parent, "plots")}
    assert set(METHOD_PLOTS) <= parent_plots
    for name in METHOD_PLOTS:
        assert_png(store["compare"] / "plots" / name)
    for png in (store["compare"] / "plots").glob("*/*.png"):
        assert_png(png)

    sweep_parent = by_role["sweep"][0].info.run_id
    html = {Path(a.path).name for a in client.list_artifacts(sweep_parent, "plots")}
    assert {"optuna_history.html", "optuna_parallel_coordinate.html", "optuna_pareto_front.html"} <= html
    page = (store["sweep"] / "plots" / "optuna_history.html").read_text()
    assert "<script" in page and 'src="http' not in page  # plotly.js inlined: opens offline
    root = {Path(a.path).name for a in client.list_artifacts(sweep_parent)}
    assert {"best_trials.md", "config.json", "search_space.json"} <= root
    for child in by_role["trial"]:
        assert any(a.path.endswith("accuracy_matrix.png") for a in _walk(client, child.info.run_id, "plots"))


def _walk(client: MlflowClient, run_id: str, path: str) -> list:
    out = []
    for a in client.list_artifacts(run_id, path):
        out += _walk(client, run_id, a.path) if a.is_dir else [a]
    return out


def test_export_reads_back_one_row_per_run_and_request(store, tmp_path):
    out = tmp_path / "export.parquet"
    assert main(["export", "--experiment", "tiny-browse", "--tracking-uri", store["uri"], "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    table = pq.read_table(out)
    assert table.num_rows == len(frame) == 4 * N_REQUESTS  # 2 sweep trials + 2 compare runs, 4 requests each
    assert not frame.duplicated(["run_id", "request"]).any()
    for column in ("run_id", "parent_run_id", "trial_id", "method", "seed", "request", "kind", "kl_oracle_all"):
        assert column in frame, column
    assert {"kl_oracle_remain", "acc_test", "gap_test", "mia_member_rate", "oracle_mia_efficacy"} <= set(frame)
    assert set(frame["kind"]) == {"learn", "unlearn"} and frame["request"].dtype == "int64"
    assert any(c.startswith("params.") for c in frame)
    compare = pd.read_parquet(store["compare"] / "results.parquet")
    ours = frame[frame["role"] == "run"].sort_values(["method", "request"])
    theirs = compare.sort_values(["method", "request"])
    assert ours["kl_oracle_all"].to_numpy() == pytest.approx(theirs["kl_oracle_all"].to_numpy())


def test_report_is_one_offline_page_with_the_table_plots_and_config(store, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(store["compare"]), "--out", str(out)]) == 0
    page = out.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no network request when opened
    assert page.count("data:image/png;base64,") == len(METHOD_PLOTS) + 2 * len(RUN_PLOTS)
    rows = pd.read_parquet(store["compare"] / "results.parquet")
    for method, frame in rows.groupby("method"):
        mean = frame["kl_oracle_all"].mean()
        cell = re.search(rf'<tr data-group="{method}">.*?data-metric="kl_oracle_all" data-mean="([^"]+)"', page)
        assert float(cell[1]) == pytest.approx(mean)
    assert '"epochs": 3' in page  # the config that produced it
    sweep_page = tmp_path / "sweep.html"
    assert main(["report", str(store["sweep"]), "--out", str(sweep_page)]) == 0
    assert "Optuna study" in sweep_page.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_answers_on_loopback_only(store):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clutune.cli", "dashboard", str(store["sweep"]), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        body = b""
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.2)
        assert b"tiny-browse-ugclu" in body
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert listening.strip() and all("127.0.0.1:" in line for line in listening.splitlines()), listening
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_dashboard_refuses_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path)]) == 2
    assert "not a sweep" in capsys.readouterr().err
