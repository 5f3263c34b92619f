"""The process-wide environment clutune runs under, defined here and nowhere else.

Ray, Tune and MLflow read these variables when they start or when a call first needs them, so each group is set
before that moment: telemetry when clutune is imported (before MLflow is), the Ray group before Ray starts (the
commands, the Python API, bench scripts and tests/conftest.py all call in here), the HTTP group before a client
of a tracking server is made. A shell that starts a program other than Python (``mkdocs`` in the Makefile) is the
only other place a variable is exported.

Every value is a default: a variable the user has set is kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Ray started by clutune on one machine: on loopback only (Ray would otherwise bind the machine's address and listen
# on every interface), no token file in the home folder, no usage reporting, trials keep the driver's cwd (relative
# paths in a config stay right), worker logs not folded, and no warning at every per-request checkpoint. Tune's JSON
# and TensorBoard loggers stay off: per result, on the trial's critical path, they write files that repeat what
# MLflow and results.parquet hold (progress.csv, the cheapest, stays for Tune's own result grid). Tune's printed
# experiment box and "View detailed results here" go too: the reporter Tune uses in notebooks prints nothing at
# verbose=0, where the newer one prints both whatever the verbosity (clutune prints its own progress through log=).
LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
RAY_ENV = {
    LOOPBACK: "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
}

# MLflow 3 sends usage events by default. A user who sets either variable decides, for both:
# ``MLFLOW_DISABLE_TELEMETRY=false`` turns MLflow's telemetry back on (docs/reliability.md, Telemetry).
TELEMETRY_VARIABLES = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}

# A tracking server that is down must cost seconds, not MLflow's minutes of retries.
HTTP_TRACKING_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


def set_defaults(variables: Mapping[str, str]) -> None:
    """Each variable the user has not set gets its value."""
    for key, value in variables.items():
        os.environ.setdefault(key, value)


def set_ray_env(address: str | None = None) -> None:
    """A driver that joins a cluster (``address``, or ``RAY_ADDRESS`` as in a Ray job) keeps Ray's own node
    addressing: on loopback it could not find its node among the cluster's, which have the machines' addresses."""
    from clutune.platform.cluster.ray_address import joins_cluster

    joining = joins_cluster(address)
    set_defaults({key: value for key, value in RAY_ENV.items() if not (joining and key == LOOPBACK)})


def telemetry_off_by_default() -> None:
    """Set both telemetry variables, unless the user has set either (then their choice stands untouched)."""
    if not any(name in os.environ for name in TELEMETRY_VARIABLES):
        os.environ.update(TELEMETRY_VARIABLES)


def bound_tracking_retries() -> None:
    """Called before an MLflow client of an ``http(s)`` store is made; a local store needs no bound."""
    set_defaults(HTTP_TRACKING_ENV)


__all__ = [
    "HTTP_TRACKING_ENV",
    "LOOPBACK",
    "RAY_ENV",
    "TELEMETRY_VARIABLES",
    "bound_tracking_retries",
    "set_defaults",
    "set_ray_env",
    "telemetry_off_by_default",
]
