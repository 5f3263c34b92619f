"""Where in a method's own code a refused call was made: the line an author has to change.

A refusal (the data door's, the runner's) is raised deep inside clutune, and a traceback's last lines name
clutune's files. The line that matters is the innermost frame outside clutune, in the author's method, or in
one of clutune's own methods when the method is built in. The walk stops at the runner: frames beyond it are
whoever ran the stream (a test, a Ray worker), not the method.
"""

from __future__ import annotations

import sysconfig
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import torch

PACKAGE = Path(__file__).resolve().parents[1]  # the clutune package folder
BUILT_IN_METHODS = PACKAGE / "clu" / "methods"
RUNNER = PACKAGE / "clu" / "runner.py"
# Frames in these are passed over: clutune's own, and the wrappers a call goes through (torch.no_grad's
# decorator, contextlib) that are never where an author wrote the call.
LIBRARIES = (PACKAGE, Path(torch.__file__).resolve().parent)
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
SITE = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}  # may lie inside STDLIB


def site_of_stack() -> str | None:
    """The method's call site on the current stack (innermost first), as ``file:line``."""
    return _site(reversed(traceback.extract_stack()[:-1]))


def site_of_traceback(tb: TracebackType | None) -> str | None:
    """The method's call site in an exception's traceback, as ``file:line``."""
    return _site(reversed(traceback.extract_tb(tb)))


def _site(frames: Iterable[traceback.FrameSummary]) -> str | None:
    built_in = None
    for frame in frames:
        if frame.filename.startswith("<frozen "):
            continue
        path = Path(frame.filename).resolve()
        if path == RUNNER:
            break
        if not _passed_over(path):
            return f"{frame.filename}:{frame.lineno}"
        if built_in is None and path.is_relative_to(BUILT_IN_METHODS):
            built_in = f"{frame.filename}:{frame.lineno}"
    return built_in


def _passed_over(path: Path) -> bool:
    if any(path.is_relative_to(library) for library in LIBRARIES):
        return True
    return path.is_relative_to(STDLIB) and not any(path.is_relative_to(site) for site in SITE)
