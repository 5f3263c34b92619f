"""Sweeps a researcher can trust: multi-seed trials, a robust objective, confirmation on fresh seeds, compute as
an objective with a brute-force-checked Pareto front. Real local Ray, Optuna and MLflow on sqlite."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import clutune
from clutune.core.config import load_config
from clutune.core.experiment import ExperimentRun, method_hparams, prepare

FAST = ["oracle.epochs=10", "epochs_per_learn=3", "methods.ugclu.iters_per_unlearn=20", "sweep.asha=false"]
KAPPA = 1.5


def _sets(tmp, *extra):
    return [*FAST, f"oracle.cache_dir={tmp / 'oracles'}", f"sweep.storage_path={tmp / 'sweeps'}", *extra]


@pytest.fixture(scope="module")
def multi_seed(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiseed")
    sets = _sets(
        tmp,
        "sweep.seeds=[0, 1, 2]",
        f"sweep.robust={KAPPA}",
        "sweep.confirm_seeds=[100, 101]",
        "sweep.sampler=random",
        "sweep.checkpoint_every=3",
    )
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    summary = clutune.sweep(
        "digits-agnostic-class", method="ugclu", trials=2, overrides=sets, tracking_uri=uri, log=lambda *_: None
    )
    return tmp, sets, uri, summary


def _child_history(uri, summary, role="trial"):
    client = MlflowClient(uri)
    parent = client.get_run(summary.parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'"
    )
    return client, [r for r in runs if r.data.tags["clutune.role"] == role]


@pytest.mark.slow  # its fixture is a multi-seed sweep with confirmation on Ray: `make test` runs it (docs/testing.md)
def test_multi_seed_trial_reports_the_mean_of_single_seed_runs(multi_seed):
    tmp, sets, uri, summary = multi_seed
    config = load_config("digits-agnostic-class", sets)
    prep = prepare(config)
    client, children = _child_history(uri, summary)
    assert len(children) == 2
    for child in children:
        trial_id = child.data.tags["clutune.trial_id"]
        params = summary.trials.set_index("trial_id").loc[trial_id]
        sampled = {k: v.item() if hasattr(v, "item") else v for k, v in params.items() if k in child.data.params}
        assert {"gamma", "beta_R", "K_in"} <= set(sampled)
        hp = method_hparams(config, "ugclu", "digits", {"epochs_per_learn": 3, **sampled})
        singles = [ExperimentRun(prep, "ugclu", hp, s).run() for s in (0, 1, 2)]
        for metric in ("kl_oracle_all", "acc_remain", "avg_gap"):
            history = {m.step: m.value for m in client.get_metric_history(child.info.run_id, metric)}
            for k in range(8):
                expected = np.mean([run[k][metric] for run in singles])
                if math.isnan(expected):  # acc_remain of the first request: nothing remains yet
                    assert k not in history
                    continue
                assert history[k] == pytest.approx(expected, rel=1e-9, abs=1e-12), (trial_id, metric, k)


@pytest.mark.slow  # its fixture is a multi-seed sweep with confirmation on Ray: `make test` runs it (docs/testing.md)
def test_robust_objective_is_mean_plus_kappa_std_over_seeds(multi_seed):
    tmp, _, _, summary = multi_seed
    rows = pd.read_parquet(summary.sweep_dir / "results.parquet")
    assert sorted(rows["seed"].unique()) == [0, 1, 2]
    for _, trial in summary.trials.iterrows():
        per_seed = rows[rows["trial_id"] == trial["trial_id"]].groupby("seed")["kl_oracle_all"].mean()
        assert len(per_seed) == 3
        assert trial["mean_kl_oracle_all"] == pytest.approx(per_seed.mean(), rel=1e-9)
        assert trial["std_kl_oracle_all"] == pytest.approx(per_seed.std(ddof=1), rel=1e-9)
        shift = trial["objective_kl_oracle_all"] - trial["mean_kl_oracle_all"]
        assert shift == pytest.approx(KAPPA * trial["std_kl_oracle_all"], rel=1e-9)


@pytest.mark.slow  # its fixture is a multi-seed sweep with confirmation on Ray: `make test` runs it (docs/testing.md)
def test_confirmation_uses_only_fresh_seeds_and_lands_on_the_parent(multi_seed):
    tmp, _, uri, summary = multi_seed
    rows = pd.read_parquet(summary.sweep_dir / "confirm" / "results.parquet")
    best = summary.best["best_trial"]
    assert set(rows["seed"]) == {100, 101}
    # the pick and its neighbour (the stability check, sweep.stability_step), each on both fresh seeds
    assert set(rows["candidate"]) == {best, f"{best}~near"}
    confirm = rows[rows["candidate"] == best]
    assert len(confirm) == 2 * 8
    client = MlflowClient(uri)
    parent = client.get_run(summary.parent_run_id)
    value = parent.data.metrics["confirmed_kl_oracle_all"]
    per_seed = confirm.groupby("seed")["kl_oracle_all"].mean()
    assert value == pytest.approx(per_seed.mean() + KAPPA * per_seed.std(ddof=1), rel=1e-9)
    assert "confirmed.csv" in {a.path for a in client.list_artifacts(summary.parent_run_id)}
    row = summary.confirmed.iloc[0]
    tol = load_config("digits-agnostic-class").sweep.confirm_tolerance
    worse = row["confirmed_kl_oracle_all"] - row["tuned_kl_oracle_all"] > tol * abs(row["tuned_kl_oracle_all"])
    assert bool(row["worse_than_tuned"]) == worse
    _, confirm_children = _child_history(uri, summary, role="confirm")
    assert len(confirm_children) == 2 * 2
    assert row["stability_runs"] == 4 and row["diverged_runs"] == 0


@pytest.mark.slow  # a five-trial sweep
def test_compute_as_an_objective_gives_a_non_dominated_front(local_ray, tmp_path):
    objectives = ["kl_oracle_all", "avg_gap", "samples_processed"]
    sets = _sets(tmp_path, f"sweep.objectives={objectives}", "sweep.sampler=random")
    summary = clutune.sweep(
        "digits-agnostic-class",
        method="ugclu",
        trials=5,
        overrides=sets,
        tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        log=lambda *_: None,
    )
    columns = [f"objective_{m}" for m in objectives]
    done = summary.trials[summary.trials["status"] == "OK"]
    front_ids = set(summary.pareto["trial_id"])

    def dominates(a, b):
        return all(a[c] <= b[c] for c in columns) and any(a[c] < b[c] for c in columns)

    expected = {r["trial_id"] for _, r in done.iterrows() if not any(dominates(o, r) for _, o in done.iterrows())}
    assert front_ids == expected and front_ids
    assert (done["objective_samples_processed"] > 0).all() and not done["objective_samples_processed"].isna().any()
    for a, b in itertools.permutations(list(summary.pareto.to_dict("records")), 2):
        assert not dominates(a, b)
    assert all(math.isfinite(v) for v in summary.pareto["objective_samples_processed"])
