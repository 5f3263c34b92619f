"""A Ray head already running on the machine (``ray start --head``, as the cluster guide has the user do): a
command without ``--address`` joins it as ``ray.init()`` does, without the system settings Ray refuses when
joining, and says so in one line.

The head is isolated: its own temp folder (``RAY_TMPDIR``, which is where ``ray.init()`` looks for the cluster
``ray start`` last started) and its own free port, so no other process on the machine finds or joins it. It is
stopped by killing only the processes it started (its process group, then anything naming its temp folder);
never ``ray stop``, which stops every Ray of the user.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a Ray head started with ray start, joined by a command

RAY = Path(sys.executable).parent / "ray"


def _pids_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def _env(tmpdir: Path) -> dict[str, str]:
    """A user's shell beside the head: Ray's own node addressing, the head's temp folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    return {**env, "RAY_TMPDIR": str(tmpdir), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture
def running_head(free_port):
    tmpdir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths live under it
    port = free_port()
    cmd = [str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    cmd += [f"--temp-dir={tmpdir / 'ray'}", "--disable-usage-stats"]
    cmd += [f"--ray-client-server-port={free_port()}", f"--node-manager-port={free_port()}"]
    cmd += [f"--object-manager-port={free_port()}", f"--min-worker-port={free_port()}", "--max-worker-port=0"]
    head = subprocess.Popen(
        cmd, env=_env(tmpdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        address_file = tmpdir / "ray" / "ray_current_cluster"
        deadline = time.time() + 120
        while not address_file.exists():
            assert head.poll() is None, head.stdout.read().decode() if head.stdout else ""
            assert time.time() < deadline, "the head did not start in 120 s"
            time.sleep(0.5)
        yield tmpdir, address_file.read_text().strip()
    finally:
        with_group = [head.pid]
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        for _ in range(2):  # what left the group (daemonised Ray processes): only those naming our temp folder
            for pid in [*with_group, *_pids_naming(str(tmpdir))]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(1)
        head.wait(timeout=30)
        assert _pids_naming(str(tmpdir)) == []
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_a_command_joins_the_running_head_and_says_so(running_head, tmp_path):
    tmpdir, address = running_head
    cmd = [sys.executable, "-m", "clutune.cli", "oracles", "--config", "digits-random", "--num-cpus", "1"]
    cmd += ["--set", "oracle.epochs=1", "--set", f"oracle.cache_dir={tmp_path / 'cache'}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(tmpdir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    joined = [line for line in done.stdout.splitlines() if line.startswith("joining the Ray cluster")]
    assert joined == [
        f"joining the Ray cluster already running on this machine at {address}; --num-cpus 1 does not apply to it"
    ]
    assert "_system_config" not in done.stderr and "Traceback" not in done.stderr
    assert "oracles," in done.stdout.splitlines()[-1]  # the cache report: the oracles trained on the head
    assert list((tmp_path / "cache").glob("*/meta.json"))
