"""Process-wide settings every command needs before Ray starts, set the same way from the shell and from Python.

They are defaults: a variable the user has set is kept.
"""

from __future__ import annotations

import os

# A local Ray on loopback only, no token file in the home folder, no usage reporting, trials keep the driver's cwd.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "0",
}


def set_ray_env(address: str | None = None) -> None:
    """A driver that joins a cluster (``address``, or ``RAY_ADDRESS`` as in a Ray job) keeps Ray's own node
    addressing: on loopback it could not find its node among the cluster's, which have the machines' addresses."""
    from clutune.platform.cluster.ray_address import joins_cluster

    joining = joins_cluster(address)
    for key, value in RAY_ENV.items():
        if not (joining and key == "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
            os.environ.setdefault(key, value)


__all__ = ["RAY_ENV", "set_ray_env"]
