"""``clutune ui`` and ``clutune dashboard`` stop their servers on SIGINT, SIGTERM and SIGHUP (real signals, real
servers; SIGHUP once left the MLflow server orphaned, still listening):
the server runs in a process group of its own and the whole group goes; a port nobody can use, or a server that
dies before it answers, is an error, never exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from clutune.cli import main
from clutune.errors import RunFailed
from clutune.platform.reports.serve import Server


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _wait_answer(url: str, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {limit_s} s")


def _journal_sweep(folder: Path) -> Path:
    import optuna

    folder.mkdir()
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "optuna-journal.log"))
    study = optuna.create_study(storage=optuna.storages.JournalStorage(backend), study_name="signals")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    return folder


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
# the MLflow server takes tens of seconds to start: its signals run in `make test`, the dashboard's in the fast loop
@pytest.mark.parametrize("command", [pytest.param("ui", marks=pytest.mark.slow), "dashboard"])
def test_a_signal_stops_the_server_and_its_whole_group(tmp_path, command, sig, free_port):
    port = free_port()
    if command == "ui":
        args = ["ui", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--no-browser"]
        health = f"http://127.0.0.1:{port}/health"
    else:
        args = ["dashboard", str(_journal_sweep(tmp_path / "sweep"))]
        health = f"http://127.0.0.1:{port}/api/studies"
    cmd = [sys.executable, "-m", "clutune.cli", *args, "--port", str(port)]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # a test run started under nohup ignores SIGHUP, and a child inherits that; clutune keeps an ignored
        # SIGHUP ignored (the test below), so each case starts from the default disposition of its signal
        preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL),
    )
    try:
        _wait_answer(health, proc)
        (server,) = _children(proc.pid)
        assert os.getpgid(server) == server != os.getpgid(proc.pid)  # the server leads a group of its own
        assert _group_members(server)
        os.kill(proc.pid, sig)  # to clutune only, as a service manager or a terminal's Ctrl-C sends it
        assert proc.wait(timeout=60) == 0
        deadline = time.time() + 10
        while _group_members(server) and time.time() < deadline:
            time.sleep(0.2)
        assert _group_members(server) == []  # nothing of the server is left
        with pytest.raises(OSError):
            urllib.request.urlopen(health, timeout=2)
    finally:  # whatever failed: clutune's group (proc leads it) and any server group it started
        for pgid in {proc.pid, *_children(proc.pid)}:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)


@pytest.mark.parametrize("command", ["ui", "dashboard"])
def test_a_port_out_of_range_or_taken_is_one_line_and_exit_2(tmp_path, capsys, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = [] if command == "ui" else [str(_journal_sweep(tmp_path / "sweep"))]
    assert main([command, *target, "--port", "99999"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--port 99999" in line and "1..65535" in line
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([command, *target, "--port", str(port)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"cannot listen on 127.0.0.1:{port}" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if command == "ui" else ["sweep"])  # no mlflow.db


def test_a_server_that_dies_before_answering_is_a_failure(free_port):
    port = free_port()
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    with pytest.raises(RunFailed, match=r"the test server exited before it answered \(exit 0\)"):
        Server.start(
            [sys.executable, "-c", "import sys; sys.exit(0)"],  # exits 0 without ever listening
            dict(os.environ),
            f"http://127.0.0.1:{port}/health",
            "the test server",
            f"http://127.0.0.1:{port}/",
        )
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before  # the process's own again


def test_a_hangup_the_process_ignores_stays_ignored(free_port):
    """Under ``nohup`` the user asked the server to outlive the terminal: SIGHUP is left ignored."""
    port = free_port()
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        server = Server([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), f"http://x:{port}/")
        try:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # SIGTERM still stops it
        finally:
            server.stop()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
