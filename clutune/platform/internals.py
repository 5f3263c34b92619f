"""The private parts of Ray and Optuna clutune depends on, behind one door, each with a version check.

clutune leans on things these libraries do not promise to keep:

- Ray: Tune's restored tuner holds its run config (with the callbacks, which Tune does not save) in a private
  attribute; ``auto`` and a head already running on this machine are found by private helpers; and the order in
  which Tune deletes a superseded checkpoint and uploads the experiment state that no longer names it
  (:mod:`clutune.platform.cluster.tune_storage` closes the gap that order leaves).
- Optuna: its exact hypervolume (WFG) lives in the private ``optuna._hypervolume``.

Each was read in the release named below. On any other release the first use fails in one line naming this
module, instead of a resume that silently loses its callbacks, a study that loses checkpoints or a convergence
curve computed by a function whose signature moved.

PyTorch's private parts are the one exception: the algorithm library imports nothing but torch, so its door is
:mod:`clutune.clu.torch_internals`, built the same way. ``tests/test_internals.py`` holds both to it: no other
module imports or reaches into a private name of these libraries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clutune.errors import UserError

TESTED_RAY = "2.60"
TESTED_OPTUNA = "5"  # the major release: optuna._hypervolume kept its signature through 5.x


def check_version(library: str, found: str, tested: str) -> None:
    """Refuse a release of ``library`` whose internals were not read: ``found`` must start with the
    dot-separated parts of ``tested``."""
    parts = tested.split(".")
    if found.split(".")[: len(parts)] != parts:
        raise UserError(
            f"{library} {found} is installed, but clutune relies on internals of {library} {tested}.x "
            f"(clutune/platform/internals.py); install {library}=={tested}.* or review that module"
        )


def check_ray_version(version: str | None = None) -> None:
    """Refuse a Ray release whose internals were not read: the pinned one (``pip install ray==2.60.*``) is."""
    import ray

    check_version("ray", version or ray.__version__, TESTED_RAY)


def check_optuna_version(version: str | None = None) -> None:
    """Refuse an Optuna release whose private hypervolume module was not read."""
    import optuna

    check_version("optuna", version or optuna.__version__, TESTED_OPTUNA)


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


def exact_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Optuna's exact hypervolume (WFG) of minimised ``points``, each at or below ``reference`` on every
    objective (the caller drops the others: WFG counts them with a negative volume)."""
    check_optuna_version()
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points, reference))


__all__ = [
    "TESTED_OPTUNA",
    "TESTED_RAY",
    "check_optuna_version",
    "check_ray_version",
    "check_version",
    "exact_hypervolume",
    "find_local_head",
    "reinstall_callbacks",
    "resolve_auto_address",
]
