"""Where files live: a local folder, ``file://``, ``s3://`` or ``gs://``, all through one pyarrow.fs code path.

On a cluster every node must see what a trial or an oracle task writes, so those places may be object stores;
object stores have no rename of a folder and no append, so everything here is whole objects: a file is written
under a temporary name and then moved to its own (one rename on a disk, one copy on an object store), and a
reader finds the old object, the new one, or none, never half of one. Credentials and endpoints are the
standard ones of each store (``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for an S3-compatible server, Google's
application-default credentials), read by pyarrow itself.
"""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from clutune.errors import UserError

SCHEMES = ("file", "s3", "gs")
REMOTE_SCHEMES = ("s3", "gs")


def scheme(location: str) -> str:
    """``""`` for a plain path; the URI scheme otherwise."""
    return urlparse(location).scheme if "://" in location else ""


def check_location(location: str, what: str) -> None:
    """A one-line error, before any work, for a place clutune cannot write to."""
    found = scheme(location)
    if found and found not in SCHEMES:
        raise UserError(f"{what} {location!r}: unsupported URI scheme {found}://; use a path, file://, s3:// or gs://")
    if found in REMOTE_SCHEMES and not urlparse(location).netloc:
        raise UserError(f"{what} {location!r}: the URI names no bucket")


def is_remote(location: str) -> bool:
    return scheme(location) in REMOTE_SCHEMES


def local_path(location: str) -> str:
    """A plain absolute path for a local location (``file://`` included); a remote URI is returned unchanged."""
    if is_remote(location):
        return location
    if scheme(location) == "file":
        return urlparse(location).path
    return str(Path(location).expanduser().resolve())


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts])


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it."""
    if not is_remote(location):
        return pafs.LocalFileSystem(), local_path(location)
    url = urlparse(location)
    root = f"{url.scheme}://{url.netloc}" + (f"?{url.query}" if url.query else "")
    try:
        fs = _remote_filesystem(root)
    except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) for a URI it cannot parse
        raise UserError(f"{location!r}: {str(e).splitlines()[0]}") from None
    return fs, f"{url.netloc}{url.path}".rstrip("/")


@functools.lru_cache(maxsize=8)
def _remote_filesystem(root: str) -> pafs.FileSystem:
    """One client per bucket and process: making one resolves credentials and the region, which takes time."""
    return pafs.FileSystem.from_uri(root)[0]


def _temporary_sibling(parent: str, name: str) -> str:
    """Where a file is written before it is moved to ``parent/name``: hidden, and unique per writer."""
    return f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.tmp"


class _CommittedOnClose:
    """A file written under a temporary sibling name and moved to its own when closed."""

    def __init__(self, path: str) -> None:
        parent, name = os.path.split(path)
        self.path, self.tmp = path, _temporary_sibling(parent, name)
        self._f = open(self.tmp, "wb")  # noqa: SIM115 (closed, and committed, by close())

    @property
    def closed(self) -> bool:
        return self._f.closed

    def write(self, data: bytes) -> int:
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
            os.replace(self.tmp, self.path)


class AtomicLocalHandler(pafs.FileSystemHandler):
    """The local disk, except that a file being written is invisible until it is whole.

    Tune writes its experiment state and uploads checkpoints with plain writes: a driver killed mid-write
    leaves a torn ``experiment_state-*.json``, which Tune's restore then treats as no experiment and silently
    starts over under new trial ids (rows and MLflow runs recorded twice). Given as Tune's storage filesystem,
    this makes each file appear whole or not at all, as an object store does by itself."""

    def __init__(self) -> None:
        self.fs = pafs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __hash__(self) -> int:
        return hash(AtomicLocalHandler)

    def get_type_name(self) -> str:
        return "clutune-atomic-local"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

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
        return pa.PythonFile(_CommittedOnClose(path), mode="w")

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        raise OSError(f"{path}: appending would expose a partly written file; write it whole instead")


def tune_storage(location: str) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for Tune: on a disk, the path on the atomic filesystem above; an
    object store's URI as it is (its objects are already whole or absent)."""
    if is_remote(location):
        return location, None
    return local_path(location), pafs.PyFileSystem(AtomicLocalHandler())


def read_bytes(location: str) -> bytes:
    """The whole object; FileNotFoundError when absent."""
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(location: str, data: bytes) -> None:
    """Written under a temporary sibling name, then moved into place: never seen half-written."""
    fs, path = resolve(location)
    parent, name = path.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    tmp = _temporary_sibling(parent, name)
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        _delete_quietly(fs, tmp)
        raise


def exists(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def delete_file(location: str) -> bool:
    """True if this call removed it, False if it was already gone."""
    fs, path = resolve(location)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        return False
    return True


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except OSError:
        pass


def staging_dir(location: str) -> Path:
    """The driver's local working folder for a remote folder: the same URI always maps to the same place, so an
    interrupted command resumes from it on the same machine."""
    digest = hashlib.sha256(location.rstrip("/").encode()).hexdigest()[:12]
    name = location.rstrip("/").rsplit("/", 1)[-1]
    return Path("~/.cache/clutune/staging").expanduser() / f"{name}-{digest}"


def upload(folder: Path, location: str) -> None:
    """Every file of ``folder`` to ``location`` (a remote folder), object by object."""
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(folder), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def download(location: str, folder: Path) -> bool:
    """The remote folder's files into ``folder``; False when there is nothing at ``location``."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(folder), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return True


def list_dir(location: str) -> list[pafs.FileInfo]:
    """The direct children; empty when the folder does not exist."""
    fs, path = resolve(location)
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def delete_dir(location: str) -> None:
    fs, path = resolve(location)
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass


def touch_local(location: str) -> None:
    """Record a use as the folder's mtime; only a disk has one to set (an object store's is its write time)."""
    if is_remote(location):
        return
    try:
        os.utime(local_path(location))
    except OSError:  # a read-only shared cache still serves; it just cannot record use
        pass
