"""Writes that fail leave the previous file whole: the failure is injected by a real filesystem wrapper whose
output streams raise after a number of bytes (a disk that fills up midway), under Tune's storage filesystem."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from clutune.core import storage
from clutune.platform.cluster import tune_storage as ts


class _FillingStream:
    """A file on the real disk that accepts ``room`` bytes, then fails as a full disk does."""

    def __init__(self, path: str, room: int) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close)
        self._room = room

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            self._file.write(bytes(data)[: self._room])
            self._room = 0
            raise OSError(28, "No space left on device")
        self._room -= len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class FullDisk(pafs.FileSystemHandler):
    """The local disk, except that every file written takes at most ``room`` bytes before the write fails."""

    def __init__(self, room: int) -> None:
        self.fs, self.room = pafs.LocalFileSystem(), room

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FullDisk) and other.room == self.room

    def __hash__(self) -> int:
        return hash((FullDisk, self.room))

    def get_type_name(self) -> str:
        return "full-disk"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("no")

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata):
        return pa.PythonFile(_FillingStream(path, self.room), mode="w")

    def open_append_stream(self, path: str, metadata):
        raise OSError("no append")


GOOD = b'{"trial_data": ["a whole experiment state"]}'


@pytest.mark.parametrize("atomic", [True, False], ids=["disk", "object-store"])
def test_a_failed_write_into_tune_storage_leaves_the_previous_file_whole(tmp_path, atomic):
    target = tmp_path / "experiment_state-x.json"
    target.write_bytes(GOOD)
    fs = pafs.PyFileSystem(ts.TuneStorageHandler(pafs.PyFileSystem(FullDisk(room=10)), atomic=atomic))
    with pytest.raises(OSError, match="No space left"):
        with fs.open_output_stream(str(target)) as f:
            f.write(b'{"trial_data": [')
            f.write(b'"the new state, longer than the room left"]}')
    assert target.read_bytes() == GOOD  # the good state stays; no torn one moved over it
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left behind


def test_storage_write_bytes_aborts_on_a_failed_write(tmp_path):
    target = tmp_path / "meta.json"
    target.write_bytes(GOOD)
    fs = pafs.PyFileSystem(FullDisk(room=10))
    with pytest.raises(OSError, match="No space left"):
        storage.write_bytes_to(fs, str(target), b"x" * 100)
    assert target.read_bytes() == GOOD
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_local_file_written_atomically_survives_a_failing_writer(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("whole")

    def writer(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        storage.write_local_atomic(target, writer)
    assert target.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
