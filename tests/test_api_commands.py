"""The commands that browse, record, check and serve, called from Python: real runs, a real sqlite MLflow store,
real servers on loopback. Each function returns what its command prints from, and refuses a wrong type or value
with one UserError before anything exists."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import ray
from mlflow.tracking import MlflowClient

import clutune
from clutune.core.oracle import OracleCache
from clutune.errors import UserError


def _config(tmp_path: Path) -> dict:
    return {
        "name": "api-commands",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [16]},
        "oracle": {"epochs": 2, "cache_dir": str(tmp_path / "oracles")},
        "scenario": {"requests": [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"classes": [1]}}]},
    }


FAST = {"epochs_per_learn": 1, "iters_per_unlearn": 5, "buffer_size": 40}


def _quiet(_line: str) -> None:
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_oracles_trains_under_the_lease_then_prunes(tmp_path, capfd):
    config = _config(tmp_path)
    cache = OracleCache(tmp_path / "oracles")
    lines: list[str] = []
    leased_while_training: list[set[str]] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("[1/"):  # an oracle has finished, the others may still train
            leased_while_training.append(cache.leased_keys())

    starts_ray = not ray.is_initialized()  # another test of the session may hold Ray already
    first = clutune.oracles(config, log=log)
    assert lines[0] == "3 distinct oracles for 3 requests; 0 already cached"
    assert len(first.trained) == 3 and first.oracles == 3 and first.bytes > 0
    assert leased_while_training == [set(first.trained)]  # the same lease a grid command takes
    assert cache.leased_keys() == set()  # and it ends with the call
    assert first.root == cache.root and first.size.endswith(("K", "M"))
    # Nothing reaches the terminal: Ray's start line, where the call started Ray, is in the cache's libraries.log
    assert capfd.readouterr() == ("", "")
    if starts_ray:
        assert "Started a local Ray instance" in (Path(cache.root) / "libraries.log").read_text()

    again = clutune.oracles(config, overrides={"oracle.epochs": 2}, log=_quiet)
    assert again.trained == [] and again.oracles == 3

    sized = clutune.oracles(cache_dir=tmp_path / "oracles", log=_quiet)
    assert (sized.oracles, sized.bytes, sized.trained, sized.removed) == (3, first.bytes, [], [])

    pruned = clutune.oracles(cache_dir=str(tmp_path / "oracles"), prune=True, max_size=0, log=lines.append)
    assert sorted(pruned.removed) == sorted(first.trained) and pruned.oracles == 0 and pruned.bytes == 0
    assert sum(line.startswith("removed ") for line in lines) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prune": True}, "--prune needs a limit"),
        ({"max_age": 3}, "only apply with --prune"),
        ({}, "give --config to train"),
        ({"prune": True, "max_size": "lots"}, "--max-size 'lots': expected a size"),
        ({"prune": True, "max_age": -1}, "--max-age -1: must be at least 0 days"),
        ({"prune": True, "max_age": "7"}, "expected a number of days"),
        ({"prune": "yes", "max_age": 1}, "prune='yes': expected True or False"),
        ({"cache_dir": 7}, "cache_dir=7: expected a path"),
        ({"overrides": {"oracle.epochs": 2}, "cache_dir": "c"}, "--set needs --config"),
    ],
)
def test_oracles_refuses_bad_options_before_touching_a_cache(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        clutune.oracles(**kwargs, log=_quiet)
    assert list(tmp_path.iterdir()) == []


def test_report_export_and_sync_from_a_recorded_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = _config(tmp_path)
    run = clutune.run(config, method="er", out=tmp_path / "run", overrides=FAST, tracking_uri=uri, log=_quiet)

    page = clutune.report(tmp_path / "run", out=tmp_path / "report.html")
    assert page == tmp_path / "report.html"
    assert "<h1>clutune report</h1>" in page.read_text() and "api-commands" in page.read_text()

    table = clutune.export("api-commands", out=tmp_path / "rows.parquet", tracking_uri=uri)
    assert len(table) == len(run.rows) == 3 and set(table["run_id"]) == {run.mlflow_run_id}
    pd.testing.assert_frame_equal(table, pd.read_parquet(tmp_path / "rows.parquet"))

    other = f"sqlite:///{tmp_path / 'other.db'}"
    synced = clutune.sync(str(tmp_path / "run"), tracking_uri=other)
    assert synced.runs_created == 1 and synced.steps_logged == 3
    assert MlflowClient(other).get_run(synced.parent_id).info.status == "FINISHED"
    assert clutune.sync(tmp_path / "run", tracking_uri=other).runs_created == 0  # nothing twice

    with pytest.raises(UserError, match="expected an .html file name"):
        clutune.report(tmp_path / "run", out=tmp_path / "report.txt")
    with pytest.raises(UserError, match="experiment=42: expected a string"):
        clutune.export(42, out=tmp_path / "x.parquet")
    with pytest.raises(UserError, match="tracking_uri=3: expected a string"):
        clutune.sync(tmp_path / "run", tracking_uri=3)
    with pytest.raises(UserError, match="not a folder written by clutune"):
        clutune.sync(tmp_path)
    with pytest.raises(UserError, match="expected a list of folders"):
        clutune.aggregate(str(tmp_path / "run"))
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "report.txt").exists()


def test_check_method_returns_the_report_the_command_prints():
    report = clutune.check_method("finetune", seed=1)
    assert report.passed and report.failed() == []
    assert "finetune" in report.table()
    with pytest.raises(UserError, match="unknown method"):
        clutune.check_method("no_such_method")
    with pytest.raises(UserError, match="method=3: expected a method name"):
        clutune.check_method(3)
    with pytest.raises(UserError, match="--seed '0': a seed is an integer"):
        clutune.check_method("finetune", seed="0")


def _journal_sweep(folder: Path) -> Path:
    import optuna

    folder.mkdir()
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "optuna-journal.log"))
    study = optuna.create_study(storage=optuna.storages.JournalStorage(backend), study_name="handles")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    return folder


@pytest.mark.slow  # an MLflow server start: `make test` runs it (docs/testing.md)
def test_dashboard_and_ui_return_a_running_server_that_stops(tmp_path):
    lines: list[str] = []
    port = _free_port()
    server = clutune.dashboard(_journal_sweep(tmp_path / "sweep"), port=port, log=lines.append)
    try:
        assert server.address == f"http://127.0.0.1:{port}/"
        assert _answers(server.address + "api/studies")  # answering when the call returns
        assert os.getpgid(server.pid) == server.pid != os.getpgid(0)  # a process group of its own
    finally:
        server.stop()
    assert not _answers(server.address + "api/studies") and server.wait() == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)  # the whole group is gone
    assert lines == [f"optuna-dashboard for {tmp_path / 'sweep'} (study sweep): {server.address} (Ctrl-C stops it)"]

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port = _free_port()
    ui = clutune.ui(tracking_uri=uri, port=port, browser=False, log=lines.append)
    try:
        assert _answers(f"http://127.0.0.1:{port}/health")
        assert lines[-1] == f"MLflow UI ready: {ui.address}"
    finally:
        ui.stop()
    assert not _answers(f"http://127.0.0.1:{port}/health")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: clutune.ui(port="5000"), "port='5000': expected an integer"),
        (lambda: clutune.ui(port=True), "port=True: expected an integer"),
        (lambda: clutune.ui(port=70000), "--port 70000: a port is in 1..65535"),
        (lambda: clutune.ui(browser="no"), "browser='no': expected True or False"),
        (lambda: clutune.dashboard(5), "sweep_dir=5: expected a path"),
        (lambda: clutune.dashboard(".", host=""), "host='': expected a non-empty string"),
        (lambda: clutune.dashboard("."), "not a sweep"),
    ],
)
def test_servers_refuse_bad_options_before_starting(tmp_path, monkeypatch, call, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        call()
    assert list(tmp_path.iterdir()) == []
