"""``clutune ui`` and ``clutune dashboard``: the two browsers of a record, bound to loopback unless asked.

``ui`` prints the runs table of the most recent experiment, not the experiment's landing page: MLflow 3.17
opens an experiment on its GenAI overview, which is empty for training runs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any

from clutune.errors import RunFailed, UserError
from clutune.guards.masking import mask
from clutune.platform.run.log import Log, print_line


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


def check_port(host: str, port: int, flag: str = "--port") -> None:
    """A port a server can bind, checked before anything starts: out of range, taken, or an unknown host is one
    line, not a server's traceback (which MLflow's exits 0 after)."""
    if not 1 <= port <= 65535:
        raise UserError(f"{flag} {port}: a port is in 1..65535")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except OSError as e:
        raise UserError(f"{flag} {port}: cannot listen on {host}:{port} ({e.strerror or type(e).__name__})") from None


class _Stop(Exception):
    """SIGTERM or SIGHUP arrived: stop the server's process group, as Ctrl-C (SIGINT) does."""


# SIGHUP too: a closed terminal or an ended ssh session sends it, and the server, in a session of its own, never
# hears it; left to the default action clutune would die and orphan the server, still listening
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _take_stop_signals() -> dict[int, Any]:
    """Each stop signal routed to :class:`_Stop`; the handlers it replaced, to give back. A signal the process
    ignores stays ignored: under ``nohup`` the user asked the server to outlive the terminal."""
    previous = {}
    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _raise_stop)
    return previous


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group (its workers too), SIGKILL to what is left after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers left by a server that exited on its own
    proc.wait()


class Server:
    """A running server in a process group of its own, as ``clutune.ui`` and ``clutune.dashboard`` return it.

    Nothing keeps listening after clutune is gone: from the start until :meth:`stop`, SIGTERM or SIGHUP to this
    process (when the server was started from the main thread) stops it as Ctrl-C does, and so does the
    interpreter's exit."""

    def __init__(self, cmd: list[str], env: dict[str, str], address: str) -> None:
        self.address = address
        self.stopped = False
        self._takes_signals = threading.current_thread() is threading.main_thread()  # only it may take signals
        self._previous = _take_stop_signals() if self._takes_signals else {}
        self._proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        atexit.register(self.stop)

    @classmethod
    def start(cls, cmd: list[str], env: dict[str, str], health: str, what: str, address: str) -> Server:
        """Start a server and return once it answers at ``health``. One that exits before it answers is a
        failure (:class:`~clutune.errors.RunFailed`), never a silent success; a signal while it starts stops it,
        and the handle returned is then already stopped (its :meth:`wait` returns 0 at once)."""
        server = cls(cmd, env, address)
        try:
            while server._proc.poll() is None:
                if _answers(health):
                    return server
                time.sleep(0.2)
        except (KeyboardInterrupt, _Stop):
            server.stop()
            return server
        server.stop()
        raise RunFailed(f"{what} exited before it answered (exit {server._proc.returncode})")

    @property
    def pid(self) -> int:
        """The server process, leader of its process group."""
        return self._proc.pid

    def wait(self) -> int:
        """Serve until the server exits or this process gets SIGINT, SIGTERM or SIGHUP, then stop its group. Returns
        0 when it was stopped (by a signal or :meth:`stop`), else the server's own exit status."""
        try:
            code = self._proc.wait()
            return 0 if self.stopped else code
        except (KeyboardInterrupt, _Stop):
            return 0
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the server's whole process group; calling it again does nothing. From another thread it stops the
        server, and the main thread's :meth:`wait` gives SIGTERM and SIGHUP back to their previous handlers."""
        if self._takes_signals and threading.current_thread() is threading.main_thread():
            self._takes_signals = False
            for sig, previous in self._previous.items():
                signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        if not self.stopped:
            self.stopped = True
            atexit.unregister(self.stop)
            _stop_group(self._proc)


def _open_browser(address: str, open_browser: bool, log: Log) -> None:
    """Open the address where a graphical browser exists; never fail."""
    log(f"MLflow UI ready: {address}")
    graphical = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if open_browser and graphical:
        try:
            webbrowser.open(address)
        except Exception:  # noqa: BLE001 (no browser is not an error: the address is printed)
            pass


def serve_mlflow(
    tracking_uri: str | None, host: str, port: int, open_browser: bool = True, log: Log = print_line
) -> Server:
    """The MLflow UI over a tracking store, started and answering; its address is the runs table's."""
    from clutune.platform.record.tracking import resolve_tracking_uri

    check_port(host, port)
    uri = resolve_tracking_uri(tracking_uri)
    try:
        experiment = latest_experiment(uri)
    except Exception as e:  # noqa: BLE001
        raise UserError(mask(f"cannot read the MLflow store {uri}: {str(e).splitlines()[0]}")) from None
    address = runs_address(host, port, experiment)
    # the store URI travels in the environment (read by --backend-store-uri's envvar), not on a command line
    # every user of the machine can list
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_BACKEND_STORE_URI": uri}
    cmd = [sys.executable, "-m", "mlflow", "server"]
    cmd += ["--host", host, "--port", str(port), "--workers", "1"]
    log(f"MLflow UI for {mask(uri)}: runs table at {address} (Ctrl-C stops it)")
    health = runs_address(host, port, None) + "health"
    server = Server.start(cmd, env, health, "the MLflow server", address)
    if not server.stopped:
        _open_browser(address, open_browser, log)
    return server


def sweep_storage(sweep_dir: Path, given: str | None = None, log: Log = print_line) -> tuple[Any, str]:
    """(Optuna storage, study name) of a sweep folder: the storage the user named, else the folder's journal.
    The folder is received input: its journal is read only from inside it, and a storage its record names is not
    opened on its own (it could create a file anywhere, or send the user's database password to the sender's
    host): the user names it with ``--study-storage``."""
    from clutune.guards.received_folder import ReceivedFolder
    from clutune.platform.record.record_file import not_connecting, read_record, study_storage

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a folder")
    received = ReceivedFolder(sweep_dir)
    name = received.root.name
    journal = received.file("optuna-journal.log")
    named = study_storage(read_record(received))
    if given:
        return given, name
    if named and journal is None:
        raise UserError(f"{sweep_dir}: {not_connecting('study storage', named, '--study-storage')}")
    if named:
        log(not_connecting("study storage", named, "--study-storage"))
    if journal is None:
        raise UserError(f"{sweep_dir} holds no optuna-journal.log (and names no sweep.study_storage): not a sweep")
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))), name


def serve_dashboard(
    sweep_dir: Path, host: str, port: int, study_storage: str | None = None, log: Log = print_line
) -> Server:
    """optuna-dashboard in a process group of its own (``clutune.platform.reports.dashboard_server``), started and
    answering; the storage URL travels in the environment, not on a command line every user of the machine can
    list."""
    check_port(host, port)
    storage, name = sweep_storage(sweep_dir, study_storage, log)
    journal = Path(sweep_dir) / "optuna-journal.log"
    source = (
        {"CLUTUNE_DASHBOARD_URL": storage} if isinstance(storage, str) else {"CLUTUNE_DASHBOARD_JOURNAL": str(journal)}
    )
    env = {**os.environ, **source}
    cmd = [sys.executable, "-m", "clutune.platform.reports.dashboard_server", host, str(port)]
    address = f"http://{host}:{port}/"
    log(f"optuna-dashboard for {sweep_dir} (study {name}): {address} (Ctrl-C stops it)")
    health = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/api/studies"
    return Server.start(cmd, env, health, "optuna-dashboard", address)


__all__ = [
    "Server",
    "latest_experiment",
    "runs_address",
    "serve_dashboard",
    "serve_mlflow",
    "sweep_storage",
]
