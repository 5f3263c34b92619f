"""Decoded image arrays cached on disk, so a folder of compressed images is decoded once per version of it.

The cache lives outside the data folder, which may be read-only: ``$CLUTUNE_DATA_CACHE``, else
``~/.cache/clutune/datasets``. An entry is one ``.npz`` named by a key over the files it was decoded from, written
atomically; an entry that cannot be read is treated as absent and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from clutune.core.storage import write_local_atomic

CACHE_ENV = "CLUTUNE_DATA_CACHE"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where decoded arrays live; the env override keeps tests and shared clusters off the home folder."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "clutune" / "datasets"


def stat_key(folder: Path, files: Iterable[Path], salt: str) -> str:
    """Names, sizes and mtimes: cheap to stat for a hundred thousand files, and any edit or re-extraction
    changes at least one of them."""
    h = hashlib.sha256(salt.encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def content_key(folder: Path, files: Iterable[Path], salt: str) -> str:
    """Names and bytes: an edit that keeps a file's size and lands within its mtime's resolution still changes
    the key. Reading the files costs about what reading the cached arrays does, far less than decoding them."""
    h = hashlib.sha256(salt.encode())
    for p in files:
        h.update(f"{p.relative_to(folder).as_posix()}\0".encode())
        with p.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


def read_arrays(path: Path, keys: Iterable[str]) -> dict[str, np.ndarray] | None:
    """The cached arrays ``keys``, or None when the entry is missing or cannot be read."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in keys}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def write_arrays(path: Path, arrays: dict[str, np.ndarray], what: str) -> None:
    """Temp file plus os.replace, so a concurrent or interrupted run never sees half an archive.

    An unwritable cache only costs the next run another decode, so it warns instead of failing the load.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(f"{what} cache not written to {path}: {e}", stacklevel=3)
        return
    write_local_atomic(path, lambda tmp: _savez(tmp, arrays))


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as f:  # a file object: given a name, np.savez would append .npz to it
        np.savez(f, **arrays)
