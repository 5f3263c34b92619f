"""The Optuna samplers a sweep can use (``sweep.sampler``), each seeded by ``sweep.sampler_seed``.

- ``tpe``: Tree-structured Parzen estimator (multivariate TPE for several objectives).
- ``gp``: the default, chosen by the sampler study (bench/sampler_study.py). Optuna's Gaussian-process
  sampler: log expected improvement for one objective, log expected hypervolume improvement for several, and it
  conditions on the trials still running (the concurrent trials of a Ray sweep), so parallel suggestions do not
  pile up on one point.
- ``random``: independent uniform draws, the baseline every model-based sampler must beat.

All three start with the same number of random start-up trials (a third of the budget, 2 to 10), so a sampler
comparison at equal budget compares what each does after them.
"""

from __future__ import annotations

import optuna

SAMPLERS = ("tpe", "gp", "random")


def startup_trials(trials: int) -> int:
    """Random trials before a model-based sampler fits: enough to fit anything, few enough to leave it room."""
    return max(2, min(10, trials // 3))


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """The seeded sampler ``name`` for a sweep of ``trials`` trials (``name`` is validated by the config)."""
    startup = startup_trials(trials)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "gp":
        # The independent sampler draws the start-up trials and any parameter outside the fitted space; seeded
        # too, so the whole sequence of suggestions is reproducible.
        return optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=startup,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


__all__ = ["SAMPLERS", "make_sampler", "startup_trials"]
