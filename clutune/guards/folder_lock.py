"""One writer per output folder: two commands given the same ``--out`` (or the same sweep folder) at once would
mix their rows in one results.parquet, and whichever compaction finished last would win.

The lock is an ``fcntl.flock`` on ``<folder>/.clutune.lock``, which the kernel drops when its holder dies, plus
a record of the holder (pid, host, start) in the same file so that a refusal can name it. The file is removed
when its holder finishes; one left behind by a holder that died on this host is stale and taken over with a
warning. Another host's process cannot be
checked (and ``flock`` on a network file system may not reach across hosts), so its record is honoured until
the user removes the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clutune.errors import UserError

LOCK_NAME = ".clutune.lock"


def _read_holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "another process"
    return f"pid {record.get('pid', '?')} on host {record.get('host', '?')}"


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refuse(folder: Path, record: dict[str, Any] | None) -> UserError:
    return UserError(
        f"{folder} is in use by {_describe(record)}: one command writes a folder at a time "
        f"(wait for it, or if it is gone remove {folder / LOCK_NAME})"
    )


def check_unlocked(folder: Path) -> None:
    """Refuse, without creating anything, a folder another live command holds: its rows would mix with ours."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise _refuse(Path(folder), _read_holder(fd)) from None
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_locked(path: Path) -> int:
    """An fd holding the flock of the file now at ``path``: a holder that released meanwhile removed the file
    it locked, so a lock taken on that unlinked file would guard nothing, and is taken again on the new one."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise _refuse(path.parent, holder) from None
            raise
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for the block: created if needed, refused in one line when another writer holds it. The
    lock file goes when the block ends; one left behind names a holder that died."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _open_locked(path)
    try:
        host = socket.gethostname()
        left = _read_holder(fd)
        if left is not None:
            if left.get("host") not in (None, host):
                raise _refuse(folder, left)
            state = "no longer running" if not _pid_alive(left.get("pid")) else "no longer holding it"
            warnings.warn(f"taking over the stale lock of {folder} left by {_describe(left)} ({state})", stacklevel=3)
        record = {"pid": os.getpid(), "host": host, "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still held: the next writer finds no file, or its own
    finally:
        os.close(fd)  # closing drops the flock


__all__ = ["LOCK_NAME", "check_unlocked", "folder_lock"]
