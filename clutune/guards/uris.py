"""Tracking URIs checked before anything is created: an unknown scheme is one line, not a traceback after the
output folder exists, and a store that only a read needs (``report``, ``export``) must already be there, because
opening a missing sqlite store creates it (and prints MLflow's migration log) before anything can say no."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from clutune.errors import UserError
from clutune.guards.masking import mask

# MLflow 3's tracking stores (its registry's schemes); a database scheme may name its driver (postgresql+psycopg2)
TRACKING_SCHEMES = (
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "http",
    "https",
    "databricks",
    "databricks-uc",
    "uc",
)


def _scheme(uri: str) -> str:
    return urlparse(uri).scheme.split("+", 1)[0].lower() if "://" in uri or uri.startswith("databricks") else ""


def check_tracking_uri(uri: str) -> str:
    """``uri`` unchanged when MLflow has a store for its scheme (a plain path is a file store); else a one-line
    :class:`UserError`. Never opens the store."""
    if "\x00" in uri or any(ord(c) < 32 for c in uri):
        raise UserError(f"tracking URI {mask(uri)!r}: contains control characters")
    scheme = _scheme(uri)
    if scheme and scheme not in TRACKING_SCHEMES:
        known = ", ".join(f"{s}://" for s in TRACKING_SCHEMES if s not in ("uc", "databricks-uc"))
        raise UserError(f"tracking URI {mask(uri)!r}: unsupported scheme {scheme}://; MLflow stores are {known}")
    if scheme in ("http", "https") and not urlparse(uri).hostname:
        raise UserError(f"tracking URI {mask(uri)!r}: names no host (expected {scheme}://host:port)")
    if scheme == "sqlite" and not uri.startswith("sqlite:///"):
        raise UserError(f"tracking URI {mask(uri)!r}: expected sqlite:///relative.db or sqlite:////absolute.db")
    if scheme == "file" and urlparse(uri).netloc not in ("", "localhost"):
        raise UserError(f"tracking URI {mask(uri)!r}: a file URI is file:///absolute/path (three slashes)")
    return uri


def local_store_path(uri: str) -> Path | None:
    """The file or folder a local store lives in (sqlite file, file:// or plain folder); None for a server."""
    scheme = _scheme(uri)
    if scheme == "sqlite":
        return Path(uri[len("sqlite:///") :])
    if scheme == "file":
        return Path(urlparse(uri).path)
    if not scheme:
        return Path(uri).expanduser()
    return None


def require_existing_store(uri: str) -> str:
    """For commands that only read a record: a local store must exist already (opening it would create it)."""
    check_tracking_uri(uri)
    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise UserError(f"no MLflow store at {mask(uri)} ({path} does not exist); give --tracking-uri of a store")
    return uri


__all__ = ["TRACKING_SCHEMES", "check_tracking_uri", "local_store_path", "require_existing_store"]
