"""The private parts of Ray and Optuna clutune depends on, behind one door, each with a version check.

clutune leans on things these libraries do not promise to keep:

- Ray: Tune's restored tuner holds its run config (with the callbacks, which Tune does not save) in a private
  attribute; ``auto`` and a head already running on this machine are found by private helpers; and the order in
  which Tune deletes a superseded checkpoint and uploads the experiment state that no longer names it
  (:mod:`clutune.platform.cluster.tune_storage` closes the gap that order leaves).
- Ray's ``OptunaSearch`` keeps the Optuna study and its trials in private attributes, which
  :class:`StoppedIsPruned` tells itself (Tune would tell a trial the scheduler stopped as complete).
- Optuna: its exact hypervolume (WFG) lives in the private ``optuna._hypervolume``.

Each was read in the release named below. On any other release the first use fails in one line naming this
module, instead of a resume that silently loses its callbacks, a study that loses checkpoints or a convergence
curve computed by a function whose signature moved.

PyTorch's private parts are the one exception: the algorithm library imports nothing but torch, so its door is
:mod:`clutune.clu.torch_internals`, built the same way. ``tests/test_internals.py`` holds both to it: no other
module imports or reaches into a private name of these libraries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

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


class StoppedIsPruned(OptunaSearch):
    """Tune's ``OptunaSearch`` tells Optuna every trial with a value as COMPLETE, so a trial the scheduler
    stopped early enters the study with its running mean over the few requests it reached; early requests score
    better than late ones, and the sampler learns minima that no complete trial can reach. Here a trial that ends
    before the stream's last request is told PRUNED, its objective reported as an intermediate value at each
    request (one objective: Optuna keeps no intermediate values for several), so TPE ranks it by the step it
    reached, GP leaves it out, and Optuna's best trial is always a complete one. Every trial carries the
    requests it reached as the user attribute ``requests_done``. A trial that diverged keeps Tune's telling: it
    reached its end, and its infinite value marks the region as bad."""

    def __init__(self, *args: Any, n_requests: int, **kwargs: Any) -> None:
        check_ray_version()
        super().__init__(*args, **kwargs)
        self.n_requests = n_requests

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        step = int(result.get("requests_done", 0))
        value = result.get(self.metric) if isinstance(self.metric, str) else None
        try:
            ot_trial.set_user_attr("requests_done", step)
            if value is not None and math.isfinite(value) and step > 0:
                ot_trial.report(float(value), step)
        except UpdateFinishedTrialError:
            pass  # a resumed driver replays a trial the study already holds as finished: nothing left to record

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        stopped = (
            result is not None
            and not error
            and not result.get("diverged")
            and int(result.get("requests_done", self.n_requests)) < self.n_requests
        )
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        if not stopped:
            if result is not None and "requests_done" in result:  # a trial's last result comes here only
                try:
                    self._ot_trials[trial_id].set_user_attr("requests_done", int(result["requests_done"]))
                except UpdateFinishedTrialError:
                    pass  # already finished in the study (a resumed driver): Tune's telling below warns and goes on
            super().on_trial_complete(trial_id, result, error)
            return
        self.on_trial_result(trial_id, result)  # the result the scheduler stopped it on reaches the searcher here
        # skip_if_finished: a resumed driver replays a trial told before the driver was killed
        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED, skip_if_finished=True)
        self._completed_trials.add(trial_id)


__all__ = [
    "TESTED_OPTUNA",
    "TESTED_RAY",
    "StoppedIsPruned",
    "check_optuna_version",
    "check_ray_version",
    "check_version",
    "exact_hypervolume",
    "find_local_head",
    "reinstall_callbacks",
    "resolve_auto_address",
]
