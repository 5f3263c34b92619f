"""Failures that a retry would repeat, told apart from those a retry may cure (a dead worker or node).

Tune restarts an errored trial up to ``sweep.max_failures`` times, and a command then offers ``--resume``. Both
help only when the cause was outside the method. A method that fetches an unlearned id, or keeps one in its
buffer, or refuses its input, does the same on every retry: it fails once, in one line that says where.
"""

from __future__ import annotations

from typing import Any

from clutune.clu.access import UnlearnedAccessError
from clutune.clu.call_site import site_of_traceback
from clutune.clu.runner import PrivacyViolation
from clutune.errors import MethodFailed, UserError

RECURRING = (UnlearnedAccessError, PrivacyViolation, UserError)


def failure_line(method: str, request: int, kind: str, error: BaseException) -> str:
    """The one line every command prints for a recurring failure (``clutune: error: <line>``)."""
    site = getattr(error, "site", None) or site_of_traceback(error.__traceback__)
    where = f", called at {site}" if site else ""
    text = str(error).strip()
    message = text.splitlines()[0] if text else type(error).__name__
    return f"method {method} failed at request {request} ({kind}){where}: {message}; a retry would fail the same way"


def raise_recurring(results: Any) -> None:
    """After a grid: the first trial that failed for good, as :class:`MethodFailed` (the CLI's one line)."""
    for result in results:
        metrics = result.metrics or {}
        if metrics.get("failed"):
            raise MethodFailed(metrics.get("error") or "a method failed")
