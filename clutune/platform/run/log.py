"""Where a command's progress lines go: stdout by default, anything that takes a line from Python."""

from __future__ import annotations

import functools
from collections.abc import Callable

Log = Callable[[str], None]
print_line: Log = functools.partial(print, flush=True)

__all__ = ["Log", "print_line"]
