"""The relearning attack and relapse (clutune.core.relearn, clutune.core.relapse) on tiny digits streams: exact
unlearning shows no gap, gradient ascent a clear one, the attack leaves the method as it was and reads through
the privacy door, and a set re-taught by a later learn request is caught coming back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from clutune.clu.access import UnlearnedAccessError
from clutune.core.config import load_config
from clutune.core.experiment import ExperimentRun, method_hparams, oracle_for, prepare
from clutune.core.relearn import attack_batches, attack_cost
from clutune.data import load_dataset
from clutune.platform.reports.plots import relapse_plot
from clutune.platform.reports.relapse_report import relapse_frame, write_relapse
from clutune.platform.reports.stats import t_interval

# Two learns, a random fifth of the owned samples unlearned, a third learn: a forget set the oracle classifies
# by generalisation, which gradient ascent pushes below it.
RANDOM_UNLEARN = [
    {"learn": {"task": 0}},
    {"learn": {"task": 1}},
    {"unlearn": {"fraction": 0.3}},
    {"learn": {"task": 2}},
]
ATTACK = {"steps": 30, "lr": 0.05, "batch_size": 64}


def config(cache: Path, requests: list[dict[str, Any]], evaluation: dict[str, Any], epochs: int = 30) -> Any:
    return load_config(
        {
            "name": "attack",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "hidden": [32]},
            "probe_size": 0,
            "oracle": {"epochs": epochs, "cache_dir": str(cache)},
            "scenario": {"requests": requests},
            "evaluation": evaluation,
        }
    )


def run_rows(prep: Any, method: str, seed: int, **hp: Any) -> list[dict[str, Any]]:
    hparams = method_hparams(prep.config, method, "digits", hp)
    return ExperimentRun(prep, method, hparams, seed).run()


def test_retrain_has_no_relearn_gap_and_gradient_ascent_a_clear_one(tmp_path: Path) -> None:
    prep = prepare(config(tmp_path / "oracles", RANDOM_UNLEARN, {"relearn": ATTACK}))
    gaps = {
        m: [run_rows(prep, m, s, **hp)[2]["relearn_gap"] for s in (0, 1, 2)]
        for m, hp in (("retrain", {}), ("ga", {"epochs_per_learn": 5}))
    }
    _, lo, hi, n = t_interval(gaps["retrain"])
    assert n == 3 and lo <= 0 <= hi, gaps["retrain"]
    mean, lo, _, _ = t_interval(gaps["ga"])
    assert lo > 0.1 and mean > 0.3, gaps["ga"]


def test_learn_requests_carry_no_attack_and_the_first_line_names_its_cost(tmp_path: Path) -> None:
    prep = prepare(config(tmp_path / "oracles", RANDOM_UNLEARN, {"relearn": ATTACK}, epochs=2))
    rows = run_rows(prep, "finetune", 0, epochs_per_learn=1)
    assert all(math.isnan(r["relearn_gap"]) for r in rows if r["kind"] == "learn")
    unlearn = rows[2]
    assert unlearn["relearn_gap"] == pytest.approx(unlearn["relearn_recovery"] - unlearn["oracle_relearn_recovery"])
    kinds = [r.kind for r in prep.scenario.requests]
    line = attack_cost(prep.config, kinds, prep.oracle_at)
    assert line is not None and "30 steps of 64" in line and "60 SGD steps (3840 samples) per run" in line
    assert attack_cost(config(tmp_path, RANDOM_UNLEARN, {}), kinds, prep.oracle_at) is None


def test_rows_are_the_same_with_the_attack_on_or_off(tmp_path: Path) -> None:
    """Every metric the run had before: the attack changes nothing the method or its evaluation does next."""
    cache = tmp_path / "oracles"
    off = run_rows(prepare(config(cache, RANDOM_UNLEARN, {}, epochs=2)), "er", 0, epochs_per_learn=2)
    on = run_rows(prepare(config(cache, RANDOM_UNLEARN, {"relearn": ATTACK}, epochs=2)), "er", 0, epochs_per_learn=2)
    measured = [c for c in off[0] if c.startswith(("acc_", "kl_", "gap_", "mia_", "oracle_acc")) or c == "forgetting"]
    assert len(measured) > 10
    for a, b in zip(off, on, strict=True):
        assert {c: a[c] for c in measured} == pytest.approx({c: b[c] for c in measured}, nan_ok=True)
        assert a["samples_processed"] == b["samples_processed"]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_the_attack_leaves_the_method_state_and_audit_as_they_were(tmp_path: Path) -> None:
    prep = prepare(config(tmp_path / "oracles", RANDOM_UNLEARN, {"relearn": ATTACK}, epochs=2))
    run = ExperimentRun(prep, "er", method_hparams(prep.config, "er", "digits", {"epochs_per_learn": 1}), 0)
    steps = run.steps()
    for _ in range(3):  # through the unlearn request
        next(steps)
    method, request = run.method, prep.scenario.requests[2]
    before = (method.state_dict(), method.data.touched.clone(), method.data.samples, torch.get_rng_state())
    assert method.buffer is not None and len(method.buffer) > 0
    columns = run.evaluator.relearn(request, method.model, oracle_for(prep, 2))
    assert columns["relearn_recovery"] > 0  # the copy did move
    after = (method.state_dict(), method.data.touched.clone(), method.data.samples, torch.get_rng_state())
    assert _equal(before, after)


def test_the_attack_reads_through_the_privacy_door(tmp_path: Path) -> None:
    prep = prepare(config(tmp_path / "oracles", RANDOM_UNLEARN, {"relearn": ATTACK}, epochs=2))
    run = ExperimentRun(prep, "er", method_hparams(prep.config, "er", "digits", {"epochs_per_learn": 1}), 0)
    steps = run.steps()
    for _ in range(3):
        next(steps)
    unlearned = prep.scenario.requests[2].ids
    fork = run.method.data.fork()
    batches = attack_batches(fork, prep.owned_ids(2), prep.config.evaluation.relearn, 2)
    assert len(batches) == ATTACK["steps"]
    assert fork.touched.any() and not fork.touched[unlearned].any()
    with pytest.raises(UnlearnedAccessError):  # a retained set that held an unlearned id is refused
        retained = torch.cat([prep.owned_ids(2), unlearned[:1]])
        attack_batches(run.method.data.fork(), retained, prep.config.evaluation.relearn, 2)
    run.method.data.fetch(prep.owned_ids(2)[:1])  # the method's own door still opens to owned ids
    with pytest.raises(UnlearnedAccessError):
        run.method.data.fetch(unlearned[:1])


def reteach_stream(reteach: bool) -> list[dict[str, Any]]:
    """Class 1 learned (but for 20 samples held back), unlearned, then the 20 held back learned: a few samples
    of the class the method hid. The control learns 20 samples of class 4 instead."""
    y = load_dataset("digits").y_train
    held = (y == 1).nonzero().flatten()[:20]
    first = torch.isin(y, torch.tensor([0, 1, 2, 3])).nonzero().flatten()
    first = first[~torch.isin(first, held)]
    later = held if reteach else (y == 4).nonzero().flatten()[:20]
    return [{"learn": {"ids": first.tolist()}}, {"unlearn": {"classes": [1]}}, {"learn": {"ids": later.tolist()}}]


def test_relapse_catches_a_class_that_a_later_learn_request_reteaches(tmp_path: Path) -> None:
    cache = tmp_path / "oracles"
    found = {}
    for reteach in (True, False):
        prep = prepare(config(cache, reteach_stream(reteach), {"relapse": {"enabled": True}}, epochs=20))
        found[reteach] = run_rows(prep, "ga", 0, epochs_per_learn=20)
    rows = found[True]
    assert math.isnan(rows[1]["relapse_acc"])  # no set unlearned before request 1
    at_unlearn, later = json.loads(rows[1]["relapse_sets"]), json.loads(rows[2]["relapse_sets"])
    assert at_unlearn[0]["unlearned_at"] == 1 and at_unlearn[0]["acc"] < 0.1  # hidden at first
    assert later[0]["acc"] > 0.9 and rows[2]["relapse_acc"] > 0.2  # back, far beyond the oracle's
    assert rows[2]["relapse_acc"] == pytest.approx(later[0]["acc"] - later[0]["oracle_acc"])
    assert found[False][2]["relapse_acc"] < 0.05  # without re-teaching it stays gone

    table = pd.DataFrame(rows).assign(method="ga", run_id="r", seed=0)
    frame = relapse_frame(table)
    assert list(frame["request"]) == [1, 2] and set(frame["unlearned_at"]) == {1}
    assert frame["acc_over_oracle"].iloc[1] == pytest.approx(rows[2]["relapse_acc"])
    assert pd.read_csv(write_relapse(table, tmp_path)).shape == frame.shape
    assert relapse_plot(table, tmp_path / "relapse.png", "ga").stat().st_size > 0
