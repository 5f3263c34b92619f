"""Tune's storage filesystem: whatever moment a driver is killed at, what it leaves behind resumes exactly.

Tune (Ray 2.60) leaves two gaps that lose or repeat work when its driver dies, both closed here by giving Tune a
filesystem that wraps the real one (the local disk, or an object store's):

- Torn files. Tune writes ``experiment_state-*.json`` with plain writes. On a disk a driver killed mid-write
  leaves it torn, and Tune's restore then treats the folder as no experiment and silently starts the grid over
  under new trial ids (every row and MLflow run recorded twice). Here a file on a disk is written under a
  temporary name and moved into place; an object store's objects are whole or absent by themselves.
- Deleted checkpoints still named. With ``CheckpointConfig(num_to_keep)``, Tune deletes a trial's older
  checkpoint the moment it registers a newer one, and only later uploads (in the background) the experiment
  state that names the newer one. A driver killed in between leaves a state naming a checkpoint that is gone:
  the trial's restore fails and the grid ends without the requests that checkpoint held. Here the deletion of a
  checkpoint folder waits until two experiment states of its experiment have landed: Tune uploads one at a time
  and stages each right before it starts, so the second was staged after the deletion was asked for and no
  longer names the checkpoint. What a kill leaves is then a spare checkpoint, never a missing one, and the
  spares go once the resumed run has ended (``settle``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import posixpath
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from clutune.core import storage

STATE_PATTERN = "experiment_state-*.json"
CHECKPOINT_PATTERN = "checkpoint_*"
LANDINGS_BEFORE_DELETE = 2


@dataclass
class _Deferred:
    fs: pafs.FileSystem
    path: str
    experiment: str
    landings: int = 0


# Process-wide: Tune deletes through the filesystem object of the checkpoint it got from a trial (unpickled in the
# driver), not the one the experiment state is uploaded through.
_lock = threading.Lock()
_deferred: list[_Deferred] = []


def _experiment_of_checkpoint(path: str) -> str:
    """``<experiment>/<trial folder>/checkpoint_000012`` -> ``<experiment>``."""
    return posixpath.dirname(posixpath.dirname(path.rstrip("/")))


def _state_landed(path: str) -> None:
    """An experiment state is whole at ``path``: deletions it makes safe are carried out."""
    experiment = posixpath.dirname(path)
    with _lock:
        for d in _deferred:
            if d.experiment == experiment:
                d.landings += 1
        due = [d for d in _deferred if d.landings >= LANDINGS_BEFORE_DELETE]
        _deferred[:] = [d for d in _deferred if d.landings < LANDINGS_BEFORE_DELETE]
    for d in due:
        _delete_dir_quietly(d.fs, d.path)


def settle(experiment: str, results: Iterable[Any]) -> int:
    """After Tune's run has returned (its last experiment state saved and waited for): every checkpoint folder of
    the experiment that no result names is deleted, those deferred here and those a killed driver left behind.
    ``experiment``: its path on Tune's storage filesystem. Returns how many were deleted."""
    experiment = experiment.rstrip("/")
    with _lock:
        _deferred[:] = [d for d in _deferred if d.experiment != experiment]
    deleted = 0
    for result in results:
        kept = {c.path for c, _ in result.best_checkpoints or []}
        if result.checkpoint is not None:
            kept.add(result.checkpoint.path)
        handler = getattr(result.filesystem, "handler", None)
        fs = handler.fs if isinstance(handler, TuneStorageHandler) else result.filesystem  # deleted now, not deferred
        for info in fs.get_file_info(pafs.FileSelector(result.path, allow_not_found=True)):
            spare = info.type == pafs.FileType.Directory and info.path not in kept
            if spare and fnmatch.fnmatch(info.base_name, CHECKPOINT_PATTERN):
                _delete_dir_quietly(fs, info.path)
                deleted += 1
    return deleted


def _delete_dir_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass


class _Sink:
    """A file being written: ``commit`` runs once it is closed (a move into place, a landed state), ``abort``
    instead when a write failed (a full disk, a broken connection), so a failed write never replaces the file
    it was meant to replace: the previous one stays whole."""

    def __init__(self, stream: Any, commit: Callable[[], None], abort: Callable[[], None]) -> None:
        self._stream, self._commit, self._abort = stream, commit, abort
        self._failed = False

    @property
    def closed(self) -> bool:
        return self._stream.closed

    def write(self, data: bytes) -> int:
        try:
            return self._stream.write(data)
        except BaseException:
            self._failed = True
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BaseException:
            self._failed = True
            raise

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        if self._stream.closed:
            return
        try:
            self._stream.close()
        except BaseException:
            self._failed = True
            raise
        finally:
            if self._failed:
                self._abort()
        if not self._failed:
            self._commit()


class _HeldBytes(io.BytesIO):
    """An object's bytes kept in memory until its sink commits them as one write."""

    value = b""

    def close(self) -> None:
        if not self.closed:
            self.value = self.getvalue()
        super().close()


class TuneStorageHandler(pafs.FileSystemHandler):
    """The wrapped filesystem ``fs`` with the two guarantees above; ``atomic``: write files under a temporary
    name and move them into place (a disk; an object store needs no help)."""

    def __init__(self, fs: pafs.FileSystem, atomic: bool) -> None:
        self.fs, self.atomic = fs, atomic

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TuneStorageHandler) and self.atomic == other.atomic and self.fs.equals(other.fs)

    def __hash__(self) -> int:
        return hash((TuneStorageHandler, self.fs.type_name, self.atomic))

    def get_type_name(self) -> str:
        return f"clutune-tune-{self.fs.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        if not fnmatch.fnmatch(posixpath.basename(path.rstrip("/")), CHECKPOINT_PATTERN):
            self.fs.delete_dir(path)
            return
        with _lock:
            _deferred.append(_Deferred(self.fs, path, _experiment_of_checkpoint(path)))

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the filesystem's root")

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self.fs.open_input_stream(src) as source, self.open_output_stream(dest, None) as sink:
            while chunk := source.read(1 << 22):
                sink.write(chunk)

    def open_input_stream(self, path: str) -> Any:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        """On a disk: a temporary sibling, moved into place on close. On an object store: the bytes are kept
        until close and only then uploaded, under a temporary name moved into place, so an upload that fails
        midway leaves no partial object in place of the previous one (closing a store's stream would commit
        what it holds)."""
        is_state = fnmatch.fnmatch(posixpath.basename(path), STATE_PATTERN)

        def landed() -> None:
            if is_state:
                _state_landed(path)

        if self.atomic:
            tmp = storage.temporary_sibling(*posixpath.split(path))
            stream: Any = self.fs.open_output_stream(tmp, metadata=metadata)

            def commit() -> None:
                self.fs.move(tmp, path)
                landed()

            def abort() -> None:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(tmp)

        else:
            stream = _HeldBytes()

            def commit() -> None:
                storage.write_bytes_to(self.fs, path, stream.value)  # a failed upload leaves no partial object
                landed()

            def abort() -> None:
                stream.value = b""

        return pa.PythonFile(_Sink(stream, commit, abort), mode="w")

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        raise OSError(f"{path}: appending would expose a partly written file; write it whole instead")


def tune_storage(location: str) -> tuple[str, pafs.FileSystem]:
    """``(storage_path, storage_filesystem)`` to give Tune for ``location`` (a path, ``file://``, ``s3://`` or
    ``gs://``): the path inside the wrapped filesystem, as Tune expects with a filesystem of its own."""
    if storage.is_remote(location):
        fs, path = storage.resolve(location)
        return path, pafs.PyFileSystem(TuneStorageHandler(fs, atomic=False))
    return storage.local_path(location), pafs.PyFileSystem(TuneStorageHandler(pafs.LocalFileSystem(), atomic=True))


__all__ = ["TuneStorageHandler", "settle", "tune_storage"]
