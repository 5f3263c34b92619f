"""Seeds given as options (``--seed``, ``--seeds``, the Python API's ``seed=``) checked like the config's own:
numpy takes a seed as an unsigned 32-bit word, so 10**23 or -1 would fail deep inside a trial instead of here."""

from __future__ import annotations

from typing import Any

from clutune.core.config import MAX_SEED
from clutune.errors import UserError


def check_seed_option(value: Any, option: str) -> int:
    """``value`` itself when it is an integer in 0..2^32-1; else a one-line :class:`UserError` naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{option} {value!r}: a seed is an integer in 0..{MAX_SEED}")
    if not 0 <= value <= MAX_SEED:
        raise UserError(f"{option} {value}: a seed must be in 0..{MAX_SEED}")
    return value


__all__ = ["check_seed_option"]
