"""What a real search and a real compare record, on local Ray with MLflow on sqlite: pruned trials in every view
of a sweep, and every run's effective hyperparameters beside its rows."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import clutune
from clutune.clu.methods import get_method
from clutune.core.config import load_config
from clutune.core.experiment import hparam_columns, method_hparams
from clutune.platform.reports.report import write_report

STREAM = (
    "scenario.requests=[{learn: {task: 0}}, {learn: {task: 1}}, {learn: {task: 2}}, {unlearn: {classes: [1]}},"
    " {learn: {task: 3}}, {learn: {task: 4}}]"
)


@pytest.mark.slow
def test_a_stopped_trial_is_pruned_in_every_record(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text("method: ugclu\nparams:\n  lr: {type: float, low: 0.0001, high: 0.5, log: true}\n")
    sets = [
        "oracle.epochs=4",
        "epochs_per_learn=1",
        "methods.ugclu.iters_per_unlearn=5",
        "probe_size=0",
        STREAM,
        "sweep.sampler=random",
        "sweep.sampler_seed=3",
        "sweep.asha=true",
        "sweep.grace_period=1",
        "sweep.reduction_factor=2",
        f"oracle.cache_dir={tmp_path / 'oracles'}",
        f"sweep.storage_path={tmp_path / 'sweeps'}",
    ]
    result = clutune.sweep(
        "digits-agnostic-class",
        method="ugclu",
        trials=8,
        space=str(space),
        overrides=sets,
        concurrency=1,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        log=lambda _line: None,
    )
    n = 6
    trials = result.trials
    assert (trials["status"] == "PRUNED").sum() >= 1, trials  # ASHA stopped some: what this test is about
    assert ((trials["status"] == "PRUNED") == (trials["requests_done"] < n)).all(), trials
    on_disk = pd.read_csv(result.sweep_dir / "trials.csv", dtype={"trial_id": str})
    assert list(on_disk["status"]) == list(trials["status"])
    curve = pd.read_csv(result.sweep_dir / "convergence.csv", dtype={"trial_id": str})
    states = dict(zip(curve["trial_id"], curve["state"], strict=True))
    for row in trials.itertuples():
        assert states[str(row.trial_id)] == ("pruned" if row.status == "PRUNED" else "complete")

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(result.sweep_dir / "optuna-journal.log"))
    )
    study = optuna.load_study(study_name=result.sweep_dir.name, storage=storage)
    rows = pd.read_parquet(result.sweep_dir / "results.parquet")
    full_means = rows.groupby("trial_id")["kl_oracle_all"].mean()
    by_lr = {round(float(r.lr), 12): str(r.trial_id) for r in trials.itertuples()}
    for t in study.trials:
        tune_id = by_lr[round(t.params["lr"], 12)]
        if t.user_attrs["requests_done"] < n:
            assert t.state == optuna.trial.TrialState.PRUNED, t
            assert sorted(t.intermediate_values) == list(range(1, t.user_attrs["requests_done"] + 1))
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.value == pytest.approx(full_means[tune_id], rel=1e-9)
    assert study.best_trial.state == optuna.trial.TrialState.COMPLETE
    assert str(result.best["best_trial"]) == by_lr[round(study.best_trial.params["lr"], 12)]

    page = write_report(str(result.sweep_dir), tmp_path / "report.html").read_text()
    pruned_ids = set(trials.loc[trials["status"] == "PRUNED", "trial_id"].astype(str))
    assert page.count('data-state="pruned"') == len(pruned_ids)
    for trial_id in pruned_ids:
        assert f'data-group="{trial_id}"' not in page  # never ranked beside complete trials


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_a_compare_records_what_each_run_ran_with(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {
        "name": "hp-record",
        "dataset": {"name": "mnist1d", "samples": 1200},
        "model": {"name": "mlp", "hidden": [32]},
        "oracle": {"epochs": 3, "cache_dir": str(tmp_path / "oracles")},
        "probe_size": 0,
        "scenario": {"requests": [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"task": 1}}]},
    }
    fast = {"epochs_per_learn": 1, "iters_per_unlearn": 5, "buffer_size": 40}
    lines: list[str] = []
    result = clutune.compare(
        config,
        methods=["er", "clpu"],
        seeds=[0, 1],
        out=tmp_path / "c",
        overrides=fast,
        tracking_uri=uri,
        log=lines.append,
    )
    notices = [line for line in lines if "no tuned defaults" in line]
    assert notices == [
        "clpu: no tuned defaults for dataset mnist1d; using the class defaults; `clutune sweep` tunes them"
    ]
    loaded = load_config(config)
    expected = {}
    for method in ("er", "clpu"):
        names = {f.name for f in dataclasses.fields(get_method(method).Hparams)}
        bare = {k: v for k, v in fast.items() if k in names}
        expected[method] = hparam_columns(method_hparams(loaded, method, "mnist1d", bare))
    rows = pd.read_parquet(tmp_path / "c" / "results.parquet")
    for method, columns in expected.items():
        mine = rows[rows["method"] == method]
        for column, value in columns.items():
            assert (mine[column] == value).all(), (method, column)
        source = "tuned defaults er-mnist1d.yaml" if method == "er" else "class defaults"
        assert (mine["hp_source"] == source).all()
    assert set(result.rows.filter(like="hp_").columns) >= set(expected["er"])

    client = MlflowClient(uri)
    children = client.search_runs(
        [client.get_experiment_by_name("hp-record").experiment_id],
        f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'",
    )
    names = sorted(c.info.run_name for c in children)
    assert names == ["clpu-s0", "clpu-s1", "er-s0", "er-s1"]
    for child in children:
        method = child.info.run_name.split("-s")[0]
        params = child.data.params
        assert params["hp.source"] in ("tuned defaults er-mnist1d.yaml", "class defaults")
        for column, value in expected[method].items():
            assert params[f"hp.{column[3:]}"] == str(value), (method, column)
    json.dumps(expected)  # every recorded value is plain data
