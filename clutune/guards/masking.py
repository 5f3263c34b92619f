"""Secrets in URIs never leave the process: one function masks them in whatever is printed, logged, stored as
an MLflow param or written to ``config.json`` and ``record.json``.

A tracking URI (``http://user:pw@host``), an Optuna study storage (``postgresql://bob@db/x?password=pw``) and an
object store URI (``s3://AK:SECRET@bkt/x``, a presigned ``...&X-Amz-Signature=...``) may all carry a secret, in
the userinfo, in a query parameter or in the fragment. Masked, the user, host and path stay readable
(``user:***@host``, ``?password=***``, ``#***``); the secret should come from the environment instead
(docs/reliability.md, Credentials).
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
# a query parameter whose name looks like a credential (password, secret_key, X-Amz-Signature, access_token, ...)
_CREDENTIAL_PARAM = re.compile(
    r"(?P<head>[?&;][^=&#\s'\"]*(?:pass(?:word|wd)?|pwd|secret|token|key|credential|signature)[^=&#\s'\"]*=)"
    r"(?P<value>[^&#\s'\"]*)",
    re.IGNORECASE,
)
# the fragment of a URI (everything after '#' up to whitespace or a quote)
_FRAGMENT = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s#'\"]*#)(?P<fragment>[^\s'\"]+)")


def mask_text(text: str) -> str:
    """``text`` with every URI secret in it (userinfo password, credential-like query values, fragment) masked."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _CREDENTIAL_PARAM.sub(lambda m: f"{m['head']}{MASK}", text)
    return _FRAGMENT.sub(lambda m: f"{m['head']}{MASK}", text)


def mask(value: Any) -> Any:
    """``value`` with the secrets of every URI in it replaced by ``***``: strings, and the strings inside
    dicts, lists and tuples (keys included); anything else unchanged."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {mask(k): mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask(v) for v in value)
    return value


def drop_masked_password(uri: str) -> str:
    """A URI read back from a record, with its masked secrets removed (``user:***@host`` -> ``user@host``, a
    ``password=***`` parameter and a ``#***`` fragment dropped) so the client takes the secret from its
    environment (``PGPASSWORD``, ``~/.pgpass``, ...) instead."""
    if f":{MASK}@" in uri:
        uri = uri.replace(f":{MASK}@", "@", 1)
    if uri.endswith(f"#{MASK}"):
        uri = uri[: -len(MASK) - 1]
    base, sep, query = uri.partition("?")
    if not sep:
        return uri
    kept = [p for p in re.split(r"[&;]", query) if not p.endswith(f"={MASK}")]
    return base + ("?" + "&".join(kept) if kept else "")


__all__ = ["MASK", "drop_masked_password", "mask", "mask_text"]
