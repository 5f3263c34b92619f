"""Convergence diagnostics on constructed trial tables: the curve against brute force, the verdict's line."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from clutune.platform.search.convergence import ConvergedStopper, analyse, curve, trial_number, verdict

COLUMNS = ["objective_a", "objective_b"]


def _trials(values: list[tuple[float, float]], status: list[str] | None = None, done: list[int] | None = None):
    n = len(values)
    frame = pd.DataFrame(values, columns=COLUMNS)
    frame.insert(0, "trial_id", [f"t{i}" for i in range(n)])
    frame.insert(1, "number", list(range(n, 0, -1)))  # numbered in reverse: the curve must follow the numbers
    frame.insert(2, "status", status or ["OK"] * n)
    frame.insert(3, "requests_done", done or [4] * n)
    return frame


def _brute_hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """The area dominated by ``points`` inside the reference box, by inclusion-exclusion over all subsets."""
    inside = [p for p in points if p[0] <= ref[0] and p[1] <= ref[1]]
    total = 0.0
    for size in range(1, len(inside) + 1):
        for subset in itertools.combinations(inside, size):
            corner = (max(p[0] for p in subset), max(p[1] for p in subset))
            total += (-1) ** (size + 1) * (ref[0] - corner[0]) * (ref[1] - corner[1])
    return total


def test_hypervolume_curve_equals_brute_force():
    rng = np.random.default_rng(0)
    values = [tuple(map(float, rng.uniform(0, 1, 2))) for _ in range(9)]
    status = ["OK"] * 9
    status[2] = "DIVERGED"
    done = [4] * 9
    done[5] = 2  # pruned: its mean over two requests does not count
    trials = _trials(values, status, done)
    frame, ref = curve(trials, COLUMNS, 4, reference=[1.1, 1.05])
    assert ref == [1.1, 1.05]
    order = trials.sort_values("number")
    assert list(frame["trial_id"]) == list(order["trial_id"])
    counted = []
    for k, (_, row) in enumerate(order.iterrows()):
        if row["status"] == "OK" and row["requests_done"] == 4:
            counted.append((row["objective_a"], row["objective_b"]))
        assert frame["hypervolume"].iloc[k] == pytest.approx(_brute_hypervolume(counted, (1.1, 1.05)), rel=1e-12)
    assert list(frame["complete"]) == [
        s == "OK" and d == 4 for s, d in zip(order["status"], order["requests_done"], strict=True)
    ]
    assert frame["hypervolume"].is_monotonic_increasing


def test_default_reference_is_ten_percent_beyond_the_worst_complete_trial():
    frame, ref = curve(_trials([(1.0, 4.0), (2.0, 3.0), (9.0, 9.0)], status=["OK", "OK", "ERROR"]), COLUMNS, 4)
    assert ref == pytest.approx([2.2, 4.4])
    assert frame["hypervolume"].iloc[-1] == pytest.approx(_brute_hypervolume([(2.0, 3.0), (1.0, 4.0)], (2.2, 4.4)))


def test_best_so_far_for_one_objective():
    trials = _trials([(3.0, 0.0), (5.0, 0.0), (1.0, 0.0), (2.0, 0.0)]).drop(columns="objective_b")
    frame, ref = curve(trials, ["objective_a"], 4)
    assert ref is None
    assert list(frame["objective_a"]) == [2.0, 1.0, 5.0, 3.0]  # by number: t3, t2, t1, t0
    assert list(frame["best"]) == [2.0, 1.0, 1.0, 1.0]


def test_verdict_on_a_still_improving_history():
    improving = [10.0, 8.0, 6.0, 5.0, 4.0, 3.5, 3.0, 2.0]  # last quarter: 3.5 -> 2.0
    converged, gain, line = verdict(improving, "best", 0.01)
    assert not converged and gain == pytest.approx(1.5 / 3.5)
    assert line.startswith(
        "not converged: the last quarter of complete trials (2 of 8; 8 finished) improved the best value by 42.9%"
    )
    assert "more trials would likely help, e.g. 16 in all" in line
    converged, gain, line = verdict([0.1, 0.2, 0.3, 0.5], "hypervolume", 0.01)
    assert not converged and gain == pytest.approx(2 / 3) and "the hypervolume" in line


def test_verdict_on_a_flat_history():
    flat = [10.0, 6.0, 4.0, 3.0, 3.0, 3.0, 3.0, 2.999]
    converged, gain, line = verdict(flat, "best", 0.01)
    assert converged and gain == pytest.approx(0.001 / 3)
    assert line == (
        "converged: the last quarter of complete trials (2 of 8; 8 finished) improved the best value by 0.0333% (<= 1%)"
    )
    assert verdict([0.1, 0.4, 0.5, 0.5, 0.5], "hypervolume", 0.01)[0]


def test_verdict_without_enough_complete_trials():
    assert verdict([1.0], "best", 0.01)[:2] == (False, math.inf)  # nothing before the last quarter
    assert verdict([2.0, 1.0], "best", 0.01, min_trials=3, finished=7)[2].endswith(
        "too few complete trials (2 of 7); a verdict needs 3 (sweep.min_trials)"
    )
    assert verdict([], "hypervolume", 0.01)[0] is False


def test_analyse_picks_the_kind_by_the_number_of_objectives():
    trials = _trials([(3.0, 1.0), (1.0, 3.0), (2.0, 2.0), (2.0, 2.0)])
    assert analyse(trials, COLUMNS, 4, 0.01).kind == "hypervolume"
    assert analyse(trials, COLUMNS[:1], 4, 0.01).kind == "best"


def test_trial_number_from_tune_folder_names():
    assert trial_number("/x/clu_trainable_1a2b3c4d_12_gamma=1.2,lr=0.01_2026", "1a2b3c4d") == 12
    assert trial_number("/x/clu_trainable_ab12c_00003_3_gamma=1.2", "ab12c_00003") == 3
    assert trial_number("/x/clu_trainable_1a2b3c4d_7_gamma=1", None) == 7


def test_the_stopper_ends_a_sweep_once_converged():
    stopper = ConvergedStopper(["objective_a"], 4, 0.01, min_trials=4)
    history = [5.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # improving until the fourth, flat after it
    verdicts = []
    for i, value in enumerate(history):
        assert stopper(f"t{i}", {"requests_done": 2, "objective_a": 0.1}) is False  # mid-stream: not counted
        stopper(f"t{i}", {"requests_done": 4, "objective_a": value})
        verdicts.append(stopper.stop_all())
    # Four complete: the last one improved; five: the last two (2.0 -> 1.0) did; six on: the last quarter is flat.
    assert verdicts == [False, False, False, False, False, True, True, True]
    stopper(f"t{len(history)}", {"requests_done": 4, "objective_a": math.inf})  # a diverged trial does not count
    assert len(stopper.complete) == len(history)
