"""Where a command's lines go: its own progress lines to ``log`` (stdout by default, anything that takes a line
from Python), the libraries' own (Ray, Tune, MLflow, Optuna) to ``libraries.log`` in the run's folder.

The libraries log through Python's ``logging`` with handlers of their own on stderr, so a notebook that passes a
quiet ``log`` would still get Ray's start-up line, Tune's trial lines, MLflow's database messages and Optuna's
study line, and Python's warnings print on stderr. While a command runs, those loggers and the warnings write to
the file instead. The loggers' warnings and errors also reach ``log`` as one line each (the whole record stays in
the file), so a trial Ray cannot place or a tracking store that refuses a write is not missed; Python's warnings
(advice to a library's own users, such as Optuna's on too few trials to rank parameters) stay in the file.
Tune's printed experiment box is turned off where Ray is configured (:mod:`clutune.platform.run.runtime`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from clutune.guards.masking import mask_text

Log = Callable[[str], None]
print_line: Log = functools.partial(print, flush=True)

LIBRARY_LOG = "libraries.log"
LIBRARY_LOGGERS = ("ray", "mlflow", "optuna", "alembic")
WARNINGS_LOGGER = "py.warnings"  # Python's warnings (Optuna's on a sweep too small to rank parameters): file only


class _Masked(logging.Formatter):
    """A library's record as written to the file, with the secrets of any URI in it masked (a tracking URI with
    its password, in an MLflow message about a failed request)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


class _FirstLine(logging.Handler):
    """A library's warning or error as one line of the command's log, naming the file that holds all of it."""

    def __init__(self, log: Log, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.log = log
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        try:
            lines = record.getMessage().strip().splitlines() or [""]
            more = f" (all of it in {self.path})" if len(lines) > 1 or record.exc_info else ""
            self.log(mask_text(f"{record.name} {record.levelname.lower()}: {lines[0]}{more}"))
        except Exception:  # a log line must never end the command
            self.handleError(record)


def _warning_to_log(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` as ``logging.captureWarnings`` makes it, for the span of a command only."""
    text = warnings.formatwarning(message, category, filename, lineno, line)
    logging.getLogger(WARNINGS_LOGGER).warning("%s", text.strip())


@contextlib.contextmanager
def libraries_logged(folder: Path, log: Log = print_line) -> Iterator[Path]:
    """While the block runs, the libraries' records and Python's warnings go to ``folder/libraries.log`` (created
    on the first one), the records' warnings and errors also to ``log``; the loggers' own handlers are put back
    afterwards."""
    import optuna  # noqa: F401  Optuna installs its handler on import: it must be there before it is set aside

    path = Path(folder) / LIBRARY_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = []
    for name in (*LIBRARY_LOGGERS, WARNINGS_LOGGER):
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        # Handlers of its own per logger: ray.init sets the format of the "ray" logger's handlers to Ray's.
        to_file = logging.FileHandler(path, encoding="utf-8", delay=True)
        to_file.setFormatter(_Masked("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.handlers = [to_file] if name == WARNINGS_LOGGER else [to_file, _FirstLine(log, path)]
        logger.propagate = False
    try:
        with warnings.catch_warnings():  # a library's warnings.warn (Optuna's on a one-trial study): to the file too
            warnings.showwarning = _warning_to_log
            yield path
    finally:
        for logger, own, propagate in saved:
            for handler in logger.handlers:
                handler.close()
            logger.handlers = own
            logger.propagate = propagate


__all__ = ["LIBRARY_LOG", "LIBRARY_LOGGERS", "WARNINGS_LOGGER", "Log", "libraries_logged", "print_line"]
