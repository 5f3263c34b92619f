"""Passwords in URIs never leave the process: one function masks them in whatever is printed, logged, stored as
an MLflow param or written to ``config.json`` and ``record.json``.

A tracking URI (``http://user:pw@host``), an Optuna study storage (``postgresql://user:pw@host/db``) and an
object store URI may all carry a password. Masked, the user and host stay readable (``user:***@host``); the
password should come from the environment instead (docs/reliability.md, Credentials).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@ : the password is everything between the first ':' after the user and the last '@'
# before the host part (a password may itself hold '@' or ':' when not percent-encoded).
_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<password>[^\s/]*)@(?=[^@\s/]*(?:[/\s?#]|$))"
)


def mask(value: Any) -> Any:
    """``value`` with the password of every URI in it replaced by ``***``: strings, and the strings inside
    dicts, lists and tuples (keys included); anything else unchanged."""
    if isinstance(value, str):
        return _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", value)
    if isinstance(value, dict):
        return {mask(k): mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask(v) for v in value)
    return value


def drop_masked_password(uri: str) -> str:
    """A URI read back from a record, with the masked password removed (``user:***@host`` -> ``user@host``) so
    the client takes the password from its environment (``PGPASSWORD``, ``~/.pgpass``, ...) instead."""
    return uri.replace(f":{MASK}@", "@", 1) if f":{MASK}@" in uri else uri


__all__ = ["MASK", "drop_masked_password", "mask"]
