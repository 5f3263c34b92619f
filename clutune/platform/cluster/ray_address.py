"""``--address`` checked before any work: ``ray.init`` would retry an address nobody answers at for minutes.

Accepted: ``auto`` (the cluster ``ray start`` last started on this machine, or ``RAY_ADDRESS``), ``host:port``
of a head's GCS, and ``ray://host:port`` (Ray Client). A dashboard address (``http://...:8265``) is what
``ray job submit`` takes, not a sweep: the error says so.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from clutune.errors import UserError

CONNECT_TIMEOUT_S = 5.0


def joins_cluster(address: str | None) -> bool:
    """Whether ``ray.init`` will join a running cluster (``--address``, ``RAY_ADDRESS`` as in a Ray job, or a
    head ``ray start --head`` started on this machine) rather than start a local Ray."""
    return bool(address or os.environ.get("RAY_ADDRESS") or local_head())


def local_head() -> str | None:
    """The address of the cluster ``ray start`` last started on this machine, found as ``ray.init()`` finds it
    (the ``ray_current_cluster`` file in Ray's temp folder, under ``RAY_TMPDIR`` when set); None when there is
    none, so a plain ``ray.init()`` would start a Ray of its own."""
    from clutune.platform.internals import find_local_head

    return find_local_head()


def check_ray_address(address: str | None) -> None:
    if address is None:
        return
    if address.startswith(("http://", "https://")):
        raise UserError(
            f"--address {address}: that is a dashboard address (for `ray job submit`); give the head's GCS "
            "address host:port (e.g. 127.0.0.1:6379) or auto"
        )
    target = _resolve(address)
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UserError(f"--address {address}: no Ray cluster answers at {host}:{port} ({why})") from None


def _resolve(address: str) -> str:
    if address.startswith("ray://"):
        return urlparse(address).netloc
    if address != "auto":
        return address
    from clutune.platform.internals import resolve_auto_address

    found = resolve_auto_address()
    if not found:
        raise UserError("--address auto: no running Ray cluster found on this machine (start one: ray start --head)")
    return found
