"""One writer per output folder: a second process given a held folder is refused in one line naming the
holder, before it writes anything; a lock left by a process that died on this host is taken over with a
warning. Real processes throughout."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from clutune.errors import UserError
from clutune.guards.folder_lock import LOCK_NAME, folder_lock

HOLD = textwrap.dedent(
    """
    import sys, time
    from clutune.guards.folder_lock import folder_lock
    with folder_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)
DIE_HOLDING = textwrap.dedent(
    """
    import os, sys
    from clutune.guards.folder_lock import folder_lock
    with folder_lock(sys.argv[1]):
        os._exit(0)  # dies without releasing, as a killed command would
    """
)


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    holder = _holder(tmp_path / "out", 60)
    try:
        with pytest.raises(UserError) as refused, folder_lock(tmp_path / "out"):
            pass
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and socket.gethostname() in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the killed holder's lock: its record is stale and the folder free again
    with pytest.warns(UserWarning, match="stale lock"), folder_lock(tmp_path / "out"):
        assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] != holder.pid


def test_a_stale_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_warning(tmp_path):
    subprocess.run([sys.executable, "-c", DIE_HOLDING, str(tmp_path / "out")], check=True)
    left = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
    assert left["host"] == socket.gethostname()
    with pytest.warns(UserWarning, match=f"stale lock .* pid {left['pid']} .*no longer running"):
        with folder_lock(tmp_path / "out"):
            pass
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # released cleanly: nothing left to take over
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a folder released cleanly is taken without a word
        with folder_lock(tmp_path / "out"):
            pass


def test_clutune_run_into_a_folder_another_process_writes_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    holder = _holder(out, 120)
    try:
        cmd = [sys.executable, "-m", "clutune.cli", "run", "--config", "digits-random", "--method", "finetune"]
        cmd += ["--out", str(out), "--overwrite", "--no-tracking", "--set", f"oracle.cache_dir={tmp_path / 'c'}"]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "in use" in lines[0], done.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written beside the holder's lock
    finally:
        holder.kill()
        holder.wait()
