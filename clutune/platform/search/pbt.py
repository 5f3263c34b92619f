"""Population-based training over a request stream (``sweep.scheduler: pbt``).

Every trial sees the same requests and the same oracles, so copying a better trial's complete state (model,
buffer, method extras, random generators, running means) at a request boundary is sound: the copy continues
the stream exactly where the source stood. Ray Tune's PopulationBasedTraining does the bookkeeping in its
synchronous mode: the whole population stops at each boundary (every ``sweep.pbt.interval`` requests), the
worst quantile copies a trial of the best quantile and perturbs its hyperparameters, clipped into the space.

The score of a decision is the windowed objective: the first objective's mean over the requests since the last
decision (mean over seeds + kappa x std, as the sweep's objective). An oracle-referenced metric has a value only
on requests that get an oracle, so every window must hold one; a policy that leaves a window without is refused
before anything starts. The trials' rows carry the lineage (``exploited_from``) and the hyperparameters each
request ran with (``hp_<name>``); see clutune/platform/run/trainable.py.
"""

from __future__ import annotations

import functools
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.search import BasicVariantGenerator

from clutune.core.config import SweepConfig
from clutune.core.oracle import oracle_requests
from clutune.errors import UserError
from clutune.platform.run.trainable import PBT_TIME_ATTR, window_name
from clutune.platform.search.search_space import SearchSpace

FIXED_KEYS = ("buffer_size",)  # sizes state a copy brings along: the copied buffer keeps the source's capacity
_ORACLE_FREE = ("forgetting", "seconds", "samples_processed")


def decision_points(n_requests: int, interval: int) -> list[int]:
    """Requests done at each decision: every ``interval`` requests, never at the end of the stream."""
    return list(range(interval, n_requests, interval))


def check_windows(sweep: SweepConfig, policy: str, every: int, kinds: list[str]) -> None:
    """One-line refusal when a window between two decisions holds no request with an oracle while the score
    needs one (every objective but forgetting, seconds and samples_processed)."""
    objective = sweep.objectives[0]
    interval = sweep.pbt.interval
    if not decision_points(len(kinds), interval):
        raise UserError(
            f"config key 'sweep.pbt.interval': {interval} requests leave no decision inside a stream of "
            f"{len(kinds)} requests; pick an interval below {len(kinds)}"
        )
    if objective in _ORACLE_FREE:
        return
    wanted = oracle_requests(policy, every, kinds)
    for end in decision_points(len(kinds), interval):
        start = end - interval
        if not any(wanted[start:end]):
            raise UserError(
                f"sweep.pbt.interval {interval} with oracle.policy {policy}: requests {start}-{end - 1} get no "
                f"oracle, so the window score {objective} has no value there; use oracle.policy every (or every_k "
                f"with every <= {interval}), or a longer interval"
            )


def mutable_keys(keys: list[str]) -> list[str]:
    """The hyperparameters PBT may change mid-stream."""
    return [k for k in keys if k not in FIXED_KEYS]


def _domain(dist: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return tune.choice(list(dist.choices))
    if isinstance(dist, optuna.distributions.IntDistribution):
        return tune.lograndint(dist.low, dist.high + 1) if dist.log else tune.randint(dist.low, dist.high + 1)
    return tune.loguniform(dist.low, dist.high) if dist.log else tune.uniform(dist.low, dist.high)


def param_space(space: SearchSpace, keys: list[str]) -> dict[str, Any]:
    """The population's first hyperparameters, drawn from the search space by Tune's seeded random search."""
    return {k: _domain(space.distributions[k]) for k in keys}


def clip_into(config: dict[str, Any], space: SearchSpace, keys: list[str]) -> dict[str, Any]:
    """A perturbed configuration clipped back into the space (PBT multiplies values without bounds)."""
    return {**config, **{k: space.project(k, config[k]) for k in keys if k in config}}


# A population member's checkpoints Tune keeps: a copy restores its source's checkpoint of the last decision, which
# may already be the source's second latest (see ``scheduler``).
CHECKPOINTS_KEPT = 2


def scheduler(sweep: SweepConfig, space: SearchSpace, keys: list[str]) -> PopulationBasedTraining:
    """Synchronous PBT on the windowed first objective, deciding every ``sweep.pbt.interval`` requests. The
    source's checkpoint at a decision may already be its second latest when a copy restores it (the copy may wait
    for a CPU while the source runs on to the next decision), so a population keeps two (``CHECKPOINTS_KEPT``)
    and checkpoints only at decisions."""
    pbt = sweep.pbt
    mutable = mutable_keys(keys)
    mutations = {
        k: list(d.choices) if isinstance(d, optuna.distributions.CategoricalDistribution) else _domain(d)
        for k, d in ((k, space.distributions[k]) for k in mutable)
    }
    return PopulationBasedTraining(
        time_attr=PBT_TIME_ATTR,
        metric=window_name(sweep.objectives[0]),
        mode="min",
        perturbation_interval=pbt.interval,
        hyperparam_mutations=mutations,
        quantile_fraction=pbt.quantile,
        resample_probability=pbt.resample_probability,
        perturbation_factors=tuple(pbt.perturbation_factors),
        custom_explore_fn=functools.partial(clip_into, space=space, keys=mutable),
        synch=True,
    )


def population(
    sweep: SweepConfig, space: SearchSpace, keys: list[str], start: dict[str, Any], trials: int
) -> tuple[BasicVariantGenerator, dict[str, Any], PopulationBasedTraining, int]:
    """(search algorithm, param space, scheduler, concurrency) of a PBT sweep: ``trials`` members drawn by Tune's
    seeded random search, the first at ``start`` (when given), all running at once (they wait for each other at each
    decision, which frees their resources for the members still queued)."""
    draw = BasicVariantGenerator(points_to_evaluate=[start] if start else None, random_state=sweep.sampler_seed)
    return draw, param_space(space, keys), scheduler(sweep, space, keys), trials


def check_pbt(sweep: SweepConfig, keys: list[str], policy: str, every: int, kinds: list[str]) -> None:
    """Everything a PBT sweep needs, checked before any side effect."""
    if not mutable_keys(keys):
        raise UserError(
            f"--scheduler pbt: the search space leaves nothing to perturb ({', '.join(FIXED_KEYS)} stays fixed "
            "within a stream); add another hyperparameter"
        )
    if sweep.checkpoint_every is not None:
        raise UserError(
            "sweep.checkpoint_every does not apply with --scheduler pbt: a population member checkpoints at every "
            "decision (sweep.pbt.interval) and at the end of the stream; remove it"
        )
    check_windows(sweep, policy, every, kinds)


__all__ = [
    "CHECKPOINTS_KEPT",
    "check_pbt",
    "check_windows",
    "decision_points",
    "param_space",
    "population",
    "scheduler",
]
