"""The optuna-dashboard process ``clutune dashboard`` starts in a process group of its own.

Usage: ``python -m clutune.platform.reports.dashboard_server HOST PORT`` with the study storage in the environment:
``CLUTUNE_DASHBOARD_URL`` (an RDB URL) or ``CLUTUNE_DASHBOARD_JOURNAL`` (a sweep's journal file).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    host, port = argv[0], int(argv[1])
    import optuna
    from optuna_dashboard import run_server

    url = os.environ.get("CLUTUNE_DASHBOARD_URL")
    if url:
        storage: object = url
    else:
        backend = optuna.storages.journal.JournalFileBackend(os.environ["CLUTUNE_DASHBOARD_JOURNAL"])
        storage = optuna.storages.JournalStorage(backend)
    run_server(storage, host=host, port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
