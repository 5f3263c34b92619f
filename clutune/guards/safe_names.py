"""Names that become path components (a config's ``name``, a sweep's folder, an experiment's) checked in one place.

A name joined into a folder path must stay inside that folder: a separator or ``..`` would let a config (perhaps
received from someone else) make a command write anywhere the user can. Control characters are refused too,
because they make folder listings and log lines lie about what was written.
"""

from __future__ import annotations

import os

from clutune.errors import UserError

MAX_NAME_LENGTH = 200  # under the 255 bytes of common file systems, with room for suffixes clutune adds
MAX_NAME_BYTES = 255  # what ext4, XFS, APFS and NTFS take as one name, counted in bytes, not characters


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe single path component, or None when it is."""
    if not name:
        return "must not be empty"
    if name in (".", ".."):
        return f"must not be {name!r}"
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    found = sorted(s for s in separators if s in name)
    if found:
        return f"must not contain a path separator ({found[0]!r})"
    if ".." in name:
        return "must not contain '..'"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "must not contain control characters"
    if len(name) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:  # 200 CJK characters are 600 bytes: no file system takes that as one name
        return f"is {size} bytes in UTF-8; a file name may be at most {MAX_NAME_BYTES}"
    return None


def check_name(name: str, what: str) -> str:
    """``name`` itself, or a one-line :class:`UserError` naming ``what`` (e.g. ``config key 'name'``)."""
    problem = name_problem(name)
    if problem is not None:
        raise UserError(f"{what} {name!r}: {problem} (it becomes a folder name; use letters, digits, - _ .)")
    return name


__all__ = ["MAX_NAME_BYTES", "MAX_NAME_LENGTH", "check_name", "name_problem"]
