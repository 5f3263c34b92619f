"""``clutune ui`` and ``clutune dashboard``: the two browsers of a record, bound to loopback unless asked.

``ui`` prints the runs table of the most recent experiment, not the experiment's landing page: MLflow 3.17
opens an experiment on its GenAI overview, which is empty for training runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any

from clutune.errors import UserError


def latest_experiment(uri: str) -> str | None:
    """The id of the experiment holding the most recently started run (None: no run anywhere yet)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None
    runs = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.experiment_id if runs else None


def runs_address(host: str, port: int, experiment_id: str | None) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}/"
    return f"{base}#/experiments/{experiment_id}/runs" if experiment_id else base


def _wait_then_open(base: str, address: str, proc: subprocess.Popen, open_browser: bool) -> None:
    """Once the server answers /health, open the address where a graphical browser exists; never fail."""
    for _ in range(600):
        if proc.poll() is not None:
            return
        try:
            with urllib.request.urlopen(base + "health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        return
    print(f"MLflow UI ready: {address}", flush=True)
    graphical = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if open_browser and graphical:
        try:
            webbrowser.open(address)
        except Exception:  # noqa: BLE001 (no browser is not an error: the address is printed)
            pass


def serve_mlflow(tracking_uri: str | None, host: str, port: int, open_browser: bool = True) -> int:
    from clutune.platform.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    try:
        experiment = latest_experiment(uri)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot read the MLflow store {uri}: {str(e).splitlines()[0]}") from None
    address = runs_address(host, port, experiment)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    cmd += ["--host", host, "--port", str(port), "--workers", "1"]
    print(f"MLflow UI for {uri}: runs table at {address} (Ctrl-C stops it)", flush=True)
    proc = subprocess.Popen(cmd, env=env)
    base = runs_address(host, port, None)
    threading.Thread(target=_wait_then_open, args=(base, address, proc, open_browser), daemon=True).start()
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return 0


def sweep_storage(sweep_dir: Path) -> tuple[Any, str]:
    """(Optuna storage, study name) of a sweep folder: its RDB URL when the sweep named one, else its journal."""
    from clutune.platform.tracking import RECORD_DIR, read_record

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a folder")
    journal = sweep_dir / "optuna-journal.log"
    configured = None
    if (sweep_dir / RECORD_DIR / "record.json").exists():
        configured = (read_record(sweep_dir).get("config", {}).get("sweep") or {}).get("study_storage")
    if configured:
        return configured, sweep_dir.name
    if not journal.exists():
        raise UserError(f"{sweep_dir} holds no optuna-journal.log (and names no sweep.study_storage): not a sweep")
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))), sweep_dir.name


def serve_dashboard(sweep_dir: Path, host: str, port: int) -> int:
    storage, name = sweep_storage(sweep_dir)
    from optuna_dashboard import run_server

    print(f"optuna-dashboard for {sweep_dir} (study {name}): http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        run_server(storage, host=host, port=port)
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["latest_experiment", "runs_address", "serve_dashboard", "serve_mlflow", "sweep_storage"]
