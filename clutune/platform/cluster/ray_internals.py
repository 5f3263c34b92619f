"""The Ray internals clutune depends on, behind one door with a version check.

clutune leans on things Ray does not promise to keep: Tune's restored tuner holds its run config (with the
callbacks, which Tune does not save) in a private attribute; ``auto`` and a head already running on this machine
are found by private helpers; and the order in which Tune deletes a superseded checkpoint and uploads the
experiment state that no longer names it
(:mod:`clutune.platform.cluster.tune_storage` closes the gap that order leaves).
Each was read in the Ray release below. On any other release the first use fails in one line naming this module,
instead of a resume that silently loses its callbacks or a study that loses checkpoints.
"""

from __future__ import annotations

from typing import Any

import ray

from clutune.errors import UserError

TESTED_RAY = "2.60"


def check_ray_version(version: str | None = None) -> None:
    """Refuse a Ray release whose internals were not read: the pinned one (``pip install ray==2.60.*``) is."""
    found = version or ray.__version__
    if found.split(".")[:2] != TESTED_RAY.split("."):
        raise UserError(
            f"Ray {found} is installed, but clutune relies on internals of Ray {TESTED_RAY} "
            f"(clutune/platform/cluster/ray_internals.py); install ray=={TESTED_RAY}.* or review that module"
        )


def reinstall_callbacks(tuner: Any, callbacks: list[Any]) -> None:
    """A restored Tuner gets back its run config without callbacks (they are not part of the saved state)."""
    check_ray_version()
    tuner._local_tuner._run_config.callbacks = callbacks


def resolve_auto_address() -> str | None:
    """The address ``ray.init(address="auto")`` would join (the head ``ray start`` last started on this machine,
    or ``RAY_ADDRESS``), or None when there is none."""
    check_ray_version()
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address("auto") or None
    except ConnectionError:
        return None


def find_local_head() -> str | None:
    """The head ``ray start --head`` started on this machine, found as a plain ``ray.init()`` finds it (the
    ``ray_current_cluster`` file in Ray's temp folder, under ``RAY_TMPDIR`` when set), or None."""
    check_ray_version()
    from ray._private.services import find_bootstrap_address

    try:
        return find_bootstrap_address(None) or None
    except OSError:
        return None


__all__ = ["TESTED_RAY", "check_ray_version", "find_local_head", "reinstall_callbacks", "resolve_auto_address"]
