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
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow.fs as pafs

from clutune.errors import UserError, raise_if_disk_full
from clutune.guards.masking import mask

SCHEMES = ("file", "s3", "gs")
REMOTE_SCHEMES = ("s3", "gs")


def scheme(location: str) -> str:
    """``""`` for a plain path; the URI scheme otherwise."""
    return urlparse(location).scheme if "://" in location else ""


def check_location(location: str, what: str) -> None:
    """A one-line error, before any work, for a place clutune cannot write to."""
    found = scheme(location)
    if found and found not in SCHEMES:
        raise UserError(
            f"{what} {mask(location)!r}: unsupported URI scheme {found}://; use a path, file://, s3:// or gs://"
        )
    if found in REMOTE_SCHEMES and not urlparse(location).netloc:
        raise UserError(f"{what} {mask(location)!r}: the URI names no bucket")
    if found == "file":
        file_path(location, what)


def is_remote(location: str) -> bool:
    return scheme(location) in REMOTE_SCHEMES


def local_path(location: str) -> str:
    """A plain absolute path for a local location (``file://`` included); a remote URI is returned unchanged."""
    if is_remote(location):
        return location
    if scheme(location) == "file":
        return file_path(location, "location")
    return str(Path(location).expanduser().resolve())


def file_path(location: str, what: str) -> str:
    """The absolute path a ``file://`` URI names, by the standard rules (RFC 8089, as urllib reads it):
    ``file:///abs/path`` or ``file://localhost/abs/path``. ``file://runs`` names a host ``runs`` and no path,
    so it is refused with the form to use rather than taken as the root folder."""
    url = urlparse(location)
    if url.netloc not in ("", "localhost") or not url.path.startswith("/"):
        raise UserError(
            f"{what} {mask(location)!r}: a file URI names an absolute path, file:///absolute/path (three slashes); "
            "for a folder relative to here give a plain path"
        )
    return url2pathname(url.path)


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
        raise UserError(mask(f"{location!r}: {str(e).splitlines()[0]}")) from None
    bucket = url.netloc.rsplit("@", 1)[-1]  # credentials in the netloc go to the client, never into a path
    return fs, f"{bucket}{url.path}".rstrip("/")


@functools.lru_cache(maxsize=8)
def _remote_filesystem(root: str) -> pafs.FileSystem:
    """One client per bucket and process: making one resolves credentials and the region, which takes time."""
    return pafs.FileSystem.from_uri(root)[0]


def temporary_sibling(parent: str, name: str) -> str:
    """Where a file is written before it is moved to ``parent/name``: hidden, and unique per writer."""
    return f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.tmp"


def read_bytes(location: str) -> bytes:
    """The whole object; FileNotFoundError when absent."""
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(location: str, data: bytes) -> None:
    """Written under a temporary sibling name, then moved into place: never seen half-written."""
    write_bytes_to(*resolve(location), data)


def write_bytes_to(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """:func:`write_bytes` on a given filesystem: a write that fails (a full disk, a dropped connection)
    deletes its temporary object and leaves whatever was at ``path`` whole."""
    parent, name = path.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    tmp = temporary_sibling(parent, name)
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        if isinstance(fs, pafs.LocalFileSystem):
            _fsync(Path(tmp))
        fs.move(tmp, path)
    except BaseException as e:
        _delete_quietly(fs, tmp)
        raise_if_disk_full(e, mask(path))
        raise


def write_local_atomic(path: Path, writer: Callable[[Path], None]) -> None:
    """A local file written whole or not at all: ``writer`` fills a temporary sibling, which is flushed to the
    disk and moved over ``path`` only when it returned; when it raises (a full disk midway), the sibling goes and
    the previous file stays whole. A writer that picks a format from the name must be told it: the sibling's
    name ends in ``.tmp``."""
    path = Path(path)
    tmp = Path(temporary_sibling(str(path.parent), path.name))
    try:
        writer(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        raise_if_disk_full(e, path)
        raise
    _fsync_folder(path.parent)


def write_local_text(path: Path, text: str) -> None:
    """:func:`write_local_atomic` of a text file (UTF-8)."""
    write_local_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _fsync(path: Path) -> None:
    """The file's bytes on the disk before its rename makes it visible: after a crash the name never points at
    a file the disk holds only part of."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """The rename itself made durable; a filesystem that cannot sync a folder (some network mounts) is left be."""
    try:
        _fsync(folder)
    except OSError:
        pass


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
