"""Per-example U-LiRA (clutune.core.ulira, clutune.core.shadows): calibrated on an exact retrain, clearly above
chance on a model that never forgot, and never a step through the method's data door."""

from __future__ import annotations

import numpy as np
import pytest

from clutune.core.config import load_config
from clutune.core.experiment import ExperimentRun, attack_cost_line, method_hparams, prepare
from clutune.core.ulira import auc, auc_interval, membership, tpr_at

# mnist1d overfits a wide MLP (train accuracy near 0.9, test near 0.4), so membership leaves a signal to find;
# one task of every class, then a random fifth of it unlearned.
REQUESTS = [{"learn": {"task": 0}}, {"unlearn": {"fraction": 0.2}}]
# finetune with the oracle's rate and batch, its unlearning turned off: a model that keeps what it was asked to forget
KEEPS = {"epochs_per_learn": 30, "lr": 0.05, "batch_size": 64, "unlearn_lr": 0.0}


def _config(tmp_path, shadows: int = 16):
    return load_config(
        {
            "name": "ulira",
            "dataset": {"name": "mnist1d", "samples": 1000},
            "model": {"name": "mlp", "hidden": [128]},
            "oracle": {"epochs": 30, "cache_dir": str(tmp_path / "oracles")},
            "scenario": {"requests": REQUESTS, "tasks": [list(range(10))]},
            "evaluation": {"ulira": {"shadows": shadows}},
            "probe_size": 0,
        }
    )


def test_membership_puts_every_sample_in_half_the_shadows():
    inside = membership(101, 8, seed=3)
    assert inside.shape == (8, 101) and (inside.sum(axis=0) == 4).all()
    with pytest.raises(ValueError):
        membership(10, 3, seed=0)


def test_auc_and_tpr_on_known_scores():
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    lo, hi = auc_interval(0.5, 100, 100)
    assert lo < 0.5 < hi and hi - lo < 0.2
    assert tpr_at(np.array([5.0, 4.0, 0.5]), np.arange(100) / 100, 0.01) == pytest.approx(2 / 3)


def test_retrain_is_calibrated_and_a_model_that_never_forgot_is_exposed(tmp_path):
    config = _config(tmp_path)
    prep = prepare(config)
    assert "16 shadow models" in attack_cost_line(prep)
    rows = {}
    for method, hp in (("retrain", {}), ("finetune", KEEPS)):
        run = ExperimentRun(prep, method, method_hparams(config, method, "mnist1d", hp), seed=0)
        rows[method] = run.run()[1]
    retrain, kept = rows["retrain"], rows["finetune"]
    assert retrain["ulira_auc_lo"] <= 0.5 <= retrain["ulira_auc_hi"]
    assert kept["ulira_auc_lo"] > 0.6 and kept["ulira_auc"] > retrain["ulira_auc_hi"]
    # the retained set was trained on by both: the attack finds it in both
    assert retrain["ulira_auc_retain"] > 0.6 and kept["ulira_auc_retain"] > 0.6


def test_the_attack_fetches_nothing_through_the_method_door(tmp_path):
    """Shadows train on the forget set through doors of their own; the method's door serves its training and
    nothing else, and refuses the unlearned ids after the attack as before it."""
    config = _config(tmp_path, shadows=4)
    prep = prepare(config)
    run = ExperimentRun(prep, "finetune", method_hparams(config, "finetune", "mnist1d", KEEPS), seed=0)
    door = run.method.data
    rows = []
    for row in run.steps():
        rows.append(row)
        if row["request"] == 0:
            door.touched.zero_()  # from here on: what the unlearn request and its attack fetched
    assert not np.isnan(rows[1]["ulira_auc"])
    assert not (door.touched & prep.scenario.unlearned(1)).any()
    assert not door.blocked[prep.scenario.owned(1)].any() and door.blocked[prep.scenario.unlearned(1)].all()
