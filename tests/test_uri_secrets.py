"""Secrets anywhere in a URI (userinfo, credential-like query parameters, fragment) are masked; an S3 URI with
credentials in its netloc never reaches a path a traceback prints; ``ui`` gives its server the store through the
environment, so ``ps`` never shows it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from clutune.core.storage import resolve
from clutune.guards.masking import drop_masked_password, mask

SECRET = "s3cret-Pw"


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        (f"postgresql://bob@db/x?password={SECRET}", "postgresql://bob@db/x?password=***"),
        (f"s3://b/p?secret_key={SECRET}&region=eu", "s3://b/p?secret_key=***&region=eu"),
        (f"s3://AK:{SECRET}@bkt/x", "s3://AK:***@bkt/x"),
        (
            f"https://bkt.s3.amazonaws.com/o?X-Amz-Credential=AK&X-Amz-Signature={SECRET}&n=1",
            "https://bkt.s3.amazonaws.com/o?X-Amz-Credential=***&X-Amz-Signature=***&n=1",
        ),
        (f"http://host:5000/#{SECRET}", "http://host:5000/#***"),
        (f"mysql://u@h/d?Access_Token={SECRET}", "mysql://u@h/d?Access_Token=***"),
    ],
)
def test_every_part_of_a_uri_that_may_hold_a_secret_is_masked(uri, masked):
    assert mask(uri) == masked
    assert SECRET not in mask(f"cannot open {uri}: refused")
    assert SECRET not in str(mask({"sweep": {"study_storage": uri}, "l": [uri]}))


def test_masked_secrets_are_dropped_before_a_recorded_uri_is_used_again():
    recorded = mask(f"postgresql://bob@db/x?password={SECRET}&sslmode=require")
    assert drop_masked_password(recorded) == "postgresql://bob@db/x?sslmode=require"
    assert drop_masked_password(mask(f"s3://b/p?secret_key={SECRET}")) == "s3://b/p"


@pytest.mark.slow  # waits out pyarrow's S3 connection attempts: `make test` runs it (docs/testing.md)
def test_an_s3_netloc_with_credentials_never_becomes_a_path_an_error_prints():
    fs, path = resolve(f"s3://AK:{SECRET}@bkt/x?region=us-east-1")
    assert path == "bkt/x"
    with pytest.raises(Exception) as caught:  # no S3 here: pyarrow fails on the path, which holds no secret
        fs.open_input_stream("no-such-bucket-" + path)
    assert SECRET not in str(caught.value)


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                found.append(int(entry.name))
                frontier.append(int(entry.name))
    return found


@pytest.mark.slow  # an MLflow server start: `make test` runs it (docs/testing.md)
def test_ui_puts_the_tracking_uri_on_no_command_line(tmp_path, free_port):
    store = tmp_path / "store-name-that-must-stay-private.db"
    port = free_port()
    cmd = [sys.executable, "-m", "clutune.cli", "ui", "--tracking-uri", f"sqlite:///{store}", "--no-browser"]
    cmd += ["--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None and time.time() < deadline
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        servers = _descendants(proc.pid)
        assert servers
        for pid in servers:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert store.name.encode() not in argv, argv
    finally:
        for pgid in {proc.pid, *_descendants(proc.pid)}:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.wait(timeout=30)
