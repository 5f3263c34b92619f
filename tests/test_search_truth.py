"""What a search learns from: a trial the scheduler stopped is pruned, never complete; one convergence rule for the
stopper and the recorded verdict; the pick rule; the stability check of a pick. Searchers are driven directly
(real Optuna, Tune's real searcher classes) where no Ray cluster is needed; one real sweep on local Ray checks
that every record agrees.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
from ray.tune.search.optuna import OptunaSearch

from clutune.platform.cluster.ray_internals import StoppedIsPruned
from clutune.platform.search.convergence import ConvergedStopper, analyse, verdict
from clutune.platform.search.search_space import SearchSpace
from clutune.platform.search.sweep import confirmation_table, pick_order

N_REQUESTS = 8


def _loss(x: float, k: int) -> float:
    """Request k's value at point x: the true landscape (best near x = 0.8) plus a drift that makes late requests
    score worse for every x, as KL to the oracle grows along a stream."""
    return (x - 0.8) ** 2 + 0.15 * k


def _drive(searcher_cls: type, seed: int, trials: int = 40) -> list[float]:
    """An ask/tell loop as Tune runs it, with an ASHA-like rule: a trial whose running mean after two requests is
    worse than the median seen at that point is stopped there. Returns the x of every suggestion."""
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    kwargs = {"n_requests": N_REQUESTS} if searcher_cls is StoppedIsPruned else {}
    searcher = searcher_cls(
        space=space,
        metric="objective",
        mode="min",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=8),
        **kwargs,
    )
    rung: list[float] = []
    xs = []
    for t in range(trials):
        trial_id = f"t{t}"
        x = searcher.suggest(trial_id)["x"]
        xs.append(x)
        total, result = 0.0, {}
        for k in range(N_REQUESTS):
            total += _loss(x, k)
            result = {"objective": total / (k + 1), "requests_done": k + 1, "training_iteration": k + 1}
            searcher.on_trial_result(trial_id, result)
            if k + 1 == 2:
                stop = len(rung) >= 2 and result["objective"] > float(np.median(rung))
                rung.append(result["objective"])
                if stop:
                    break
        searcher.on_trial_complete(trial_id, result)
    return xs


def test_pruned_telling_keeps_the_sampler_off_the_stopped_trials():
    """Told as complete, stopped trials (running means over two cheap requests) look better than any complete
    one, and TPE's later suggestions drift toward them, away from the true optimum at 0.8. Told as pruned, they
    do not: the later suggestions sit measurably closer to the optimum, on every sampler seed."""
    old, new = [], []
    for seed in range(4):
        old.append(np.mean([abs(x - 0.8) for x in _drive(OptunaSearch, seed)[20:]]))
        new.append(np.mean([abs(x - 0.8) for x in _drive(StoppedIsPruned, seed)[20:]]))
    assert all(n < o for n, o in zip(new, old, strict=True)), (old, new)
    assert np.mean(old) - np.mean(new) > 0.05, (old, new)


def test_a_stopped_trial_is_pruned_with_its_intermediate_values():
    searcher = StoppedIsPruned(
        space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
        metric="objective",
        mode="min",
        sampler=optuna.samplers.RandomSampler(seed=0),
        n_requests=4,
    )
    for trial_id, reached in (("a", 4), ("b", 2)):
        searcher.suggest(trial_id)
        for k in range(reached):
            searcher.on_trial_result(trial_id, {"objective": 1.0 - 0.1 * k, "requests_done": k + 1})
        searcher.on_trial_complete(trial_id, {"objective": 9.0 if reached == 2 else 0.5, "requests_done": reached})
    complete, pruned = searcher._ot_study.trials  # noqa: SLF001 (the study the adapter tells)
    assert complete.state == optuna.trial.TrialState.COMPLETE and complete.value == 0.5
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert pruned.intermediate_values == {1: 1.0, 2: 0.9} and pruned.user_attrs["requests_done"] == 2
    assert searcher._ot_study.best_trial.number == complete.number  # noqa: SLF001


def _history(values: list[float], done: list[int] | None = None) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(n)],
            "number": list(range(n)),
            "finished_at": [float(i) for i in range(n)],
            "status": ["OK"] * n,
            "requests_done": done or [4] * n,
            "objective_a": values,
        }
    )


@pytest.mark.parametrize(
    ("values", "done", "expected", "words"),
    [
        ([3.0, 2.0, 1.0, 1.0, 1.0], None, False, "too few complete trials (5 of 5)"),
        ([5.0] + [1.0] * 7 + [0.1] * 12, [4] * 8 + [2] * 12, False, "too few complete trials (8 of 20)"),
        ([5.0, 3.0, 2.0] + [1.0] * 9, None, True, "converged: the last quarter of complete trials (3 of 12"),
        ([12.0 - i for i in range(12)], None, False, "not converged: the last quarter of complete trials"),
    ],
    ids=["too-few", "too-few-complete-among-pruned", "levelled-off", "still-improving"],
)
def test_the_stopper_and_the_recorded_verdict_apply_one_rule(values, done, expected, words):
    history = _history(values, done)
    recorded = analyse(history, ["objective_a"], 4, 0.01, min_trials=10)
    assert recorded.converged is expected and words in recorded.line, recorded.line
    stopper = ConvergedStopper(["objective_a"], 4, 0.01, min_trials=10)
    for row in history.itertuples():
        stopper(row.trial_id, {"requests_done": row.requests_done, "objective_a": row.objective_a})
    assert stopper.stop_all() is expected


def test_pruned_trials_stay_in_the_curve_with_their_state():
    history = _history([2.0, 0.1, 1.0], [4, 1, 4])
    frame = analyse(history, ["objective_a"], 4, 0.01).curve
    assert list(frame["state"]) == ["complete", "pruned", "complete"]
    assert list(frame["requests_done"]) == [4, 1, 4]
    assert list(frame["best"]) == [2.0, 2.0, 1.0]  # the pruned trial's 0.1 never counts


def test_the_verdict_follows_completion_order_not_trial_numbers():
    history = _history([1.0, 1.0, 1.0, 5.0]).assign(finished_at=[3.0, 2.0, 1.0, 0.0])
    # completed 5, 1, 1, 1: the last quarter (one trial) did not improve on 1.0
    assert analyse(history, ["objective_a"], 4, 0.01).converged
    assert verdict([5.0, 1.0, 1.0, 1.0], "best", 0.01)[0]


FRONT = pd.DataFrame(
    {
        "trial_id": ["a", "b", "c", "d"],
        "objective_kl": [0.50, 0.52, 0.60, 0.80],
        "objective_gap": [0.30, 0.20, 0.11, 0.10],
    }
)
COLS = ["objective_kl", "objective_gap"]


def test_each_pick_rule_picks_its_trial_on_a_constructed_front():
    # knee: sums of value / front best: a 1+3=4, b 1.04+2=3.04, c 1.2+1.1=2.3, d 1.6+1=2.6
    assert pick_order(FRONT, COLS, "knee")["trial_id"].iloc[0] == "c"
    assert pick_order(FRONT, COLS, "first")["trial_id"].iloc[0] == "a"  # no slack asked: the best KL
    # within 100% of the best gap (<= 0.20): b is the best KL among b, c, d
    assert pick_order(FRONT, COLS, "first", tolerance=1.0)["trial_id"].iloc[0] == "b"
    assert pick_order(FRONT, COLS, "weights", weights=[100.0, 1.0])["trial_id"].iloc[0] == "a"  # 100 + 3 < 104 + 2
    assert pick_order(FRONT, COLS, "weights", weights=[0.0, 1.0])["trial_id"].iloc[0] == "d"
    assert list(pick_order(FRONT, COLS[:1])["trial_id"]) == ["a", "b", "c", "d"]


class _Sweep:
    objectives = ["kl_oracle_all"]
    robust = 0.0
    confirm_tolerance = 0.25


def _space() -> SearchSpace:
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True),
        "k": optuna.distributions.IntDistribution(1, 10),
    }
    return SearchSpace("m", "space.yaml", {}, dists)


def _rows(candidate: str, seeds: list[int], short: dict[int, int] | None = None) -> list[dict]:
    rows = []
    for seed in seeds:
        for k in range((short or {}).get(seed, 4)):
            rows.append({"candidate": candidate, "seed": seed, "request": k, "kl_oracle_all": 0.4 + 0.01 * seed})
    return rows


def test_the_stability_check_flags_a_pick_that_diverges_on_one_extra_seed():
    chosen = pd.DataFrame(
        {"trial_id": ["p", "q"], "objective_kl_oracle_all": [0.35, 0.38], "lr": [1.0, 0.1], "k": [3, 1]}
    )
    seeds = [10, 11, 12]
    rows = pd.DataFrame(
        _rows("p", seeds, short={12: 2})  # the pick diverges at request 2 on the third fresh seed
        + _rows("p~near", seeds)
        + _rows("q", seeds)
        + _rows("q~near", seeds)
    )
    table = confirmation_table(rows, chosen, chosen, ["kl_oracle_all"], _Sweep, 4, _space(), ["lr", "k"])
    p, q = table.iloc[0], table.iloc[1]
    assert p["diverged_runs"] == 1 and p["stability_runs"] == 6 and p["divergence_rate"] == pytest.approx(1 / 6)
    assert q["diverged_runs"] == 0
    assert list(table["picked"]) == [False, True]  # the stable runner-up becomes the pick
    assert p["on_bound"] == "lr" and q["on_bound"] == "k"
    assert p["optimism_kl_oracle_all"] == pytest.approx(p["confirmed_kl_oracle_all"] - 0.35)
    assert p["confirmed_lo_kl_oracle_all"] < p["confirmed_mean_kl_oracle_all"] < p["confirmed_hi_kl_oracle_all"]


def test_a_neighbour_moves_every_value_inward():
    space = _space()
    assert space.inward("lr", 1.0, 0.05) == pytest.approx(math.exp(0.95 * math.log(1.0) + 0.05 * math.log(1e-3)))
    assert space.inward("lr", 1e-3, 0.05) > 1e-3
    assert space.inward("k", 1, 0.05) == 2 and space.inward("k", 10, 0.05) == 9
    assert space.on_bound("k", 10) and not space.on_bound("lr", 0.1)
