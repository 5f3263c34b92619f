"""A rough estimate of what a config will allocate, held against the machine's memory before anything starts:
a typo of a few zeros (``n_requests: 1000000000000``) is one line, not a numpy allocation error of terabytes
after the output folder exists."""

from __future__ import annotations

import os

from clutune.errors import UserError


def machine_memory_bytes() -> int:
    """Physical memory of this machine (POSIX); a large figure where the platform cannot say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


def _fmt(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def memory_problem(estimate_bytes: float, what: str) -> str | None:
    """Why ``estimate_bytes`` (``what`` it is) cannot be allocated here, or None when it fits in memory."""
    total = machine_memory_bytes()
    if estimate_bytes > total:
        return f"{what} needs about {_fmt(estimate_bytes)}, more than this machine's {_fmt(total)} of memory"
    return None


def refusal(estimate_bytes: float, key: str, what: str) -> UserError:
    """The one-line refusal of ``estimate_bytes`` (``what`` it is), for a caller that learnt the size late."""
    return UserError(
        f"config key {key!r}: {what} needs about {_fmt(estimate_bytes)}, more than this machine's "
        f"{_fmt(machine_memory_bytes())} of memory"
    )


def check_fits(estimate_bytes: float, key: str, what: str) -> None:
    """Refuse ``estimate_bytes`` (``what`` it is) when it exceeds this machine's memory."""
    if memory_problem(estimate_bytes, what):
        raise refusal(estimate_bytes, key, what)


__all__ = ["check_fits", "machine_memory_bytes", "memory_problem", "refusal"]
