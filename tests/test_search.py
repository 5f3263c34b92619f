"""Samplers, start points and convergence records on real sweeps: local Ray, real Optuna, MLflow on sqlite.

Every sweep here is tiny (digits, three requests, one epoch per learn request, three trials): these tests check
that each path works and what it records, not how well it searches (bench/sampler_study.py measures that).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import clutune
from clutune.errors import UserError
from clutune.platform.reports.report import write_report
from clutune.platform.search.samplers import SAMPLERS, make_sampler

TINY = [
    "oracle.epochs=5",
    "epochs_per_learn=1",
    "methods.ugclu.iters_per_unlearn=5",
    "probe_size=0",
    "sweep.asha=false",
    "scenario.requests=[{learn: {task: 0}}, {learn: {task: 1}}, {unlearn: {classes: [1]}}]",
]
TWO = "sweep.objectives=[kl_oracle_all, avg_gap]"
PINNED = ["methods.ugclu.lr=0.2", "methods.ugclu.K_in=6", "methods.ugclu.decay=true", "methods.ugclu.gamma=0.5"]


def _sets(tmp: Path, *extra: str) -> list[str]:
    return [*TINY, f"oracle.cache_dir={tmp / 'oracles'}", f"sweep.storage_path={tmp / 'sweeps'}", *extra]


def _space(tmp: Path, body: str) -> str:
    path = tmp / f"space-{abs(hash(body))}.yaml"
    path.write_text("method: ugclu\nparams:\n" + body)
    return str(path)


SPACE = (
    "  gamma: {type: float, low: 0.1, high: 10.0, log: true}\n  lr: {type: float, low: 0.003, high: 0.3, log: true}\n"
)


def _suggestions(name: str, seed: int, directions: list[str]) -> list[dict]:
    """Ten ask/tell rounds, two trials in flight at a time (as a concurrency-2 sweep), on a fixed objective."""
    study = optuna.create_study(directions=directions, sampler=make_sampler(name, seed, 10))
    space = {
        "x": optuna.distributions.FloatDistribution(0.01, 10.0, log=True),
        "k": optuna.distributions.IntDistribution(0, 10),
    }
    running, asked = [], []
    for _ in range(10):
        trial = study.ask(space)
        asked.append(dict(trial.params))
        running.append(trial)
        if len(running) == 2:
            done = running.pop(0)
            x, k = done.params["x"], done.params["k"]
            values = [(x - 1.0) ** 2 + k, abs(k - 5) + x][: len(directions)]
            study.tell(done, values)
    return asked


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("objectives", [1, 2])
def test_same_seed_same_suggestions(name, objectives):
    directions = ["minimize"] * objectives
    first = _suggestions(name, 3, directions)
    assert first == _suggestions(name, 3, directions)
    assert first != _suggestions(name, 4, directions)


def test_sweep_start_sampler_draws_every_trial_with_the_sampler(local_ray, tmp_path, monkeypatch):
    """A sampler study's sweeps: no trial sits at the method's defaults (pinned here, so they are known)."""
    monkeypatch.chdir(tmp_path)
    lines: list[str] = []
    summary = clutune.sweep(
        "digits-agnostic-class",
        method="ugclu",
        trials=2,
        overrides=_sets(tmp_path, "sweep.start=sampler", "sweep.sampler=tpe", *PINNED),
        space=_space(tmp_path, SPACE),
        concurrency=2,
        tracking=False,
        log=lines.append,
    )
    assert lines[0] == "first trial: drawn by the sampler (sweep.start: sampler); sampler tpe; pick: best kl_oracle_all"
    drawn = summary.trials[["lr", "gamma"]].to_numpy().tolist()
    assert len(drawn) == 2 and [0.2, 0.5] not in drawn, drawn
    with pytest.raises(UserError, match="config key 'sweep.start': expected defaults, sampler, got 'first'"):
        clutune.sweep("digits-agnostic-class", method="ugclu", trials=1, overrides=["sweep.start=first"], log=print)


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_sweeps_one_and_two_objectives_concurrently(local_ray, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    space = _space(tmp_path, SPACE)
    for objectives, tag in (([], "one"), ([TWO], "two")):
        sets = _sets(tmp_path, f"sweep.sampler={name}", "sweep.sampler_seed=5", f"sweep.storage_path={tmp_path / tag}")
        lines: list[str] = []
        summary = clutune.sweep(
            "digits-agnostic-class",
            method="ugclu",
            trials=3,
            overrides=[*sets, *objectives],
            space=space,
            concurrency=2,
            tracking=False,
            log=lines.append,
        )
        pick = "pick: best kl_oracle_all" if tag == "one" else "pick: knee over kl_oracle_all, avg_gap"
        assert lines[0] == f"first trial: the method's tuned defaults; sampler {name}; {pick}", lines[:3]
        assert len(summary.trials) == 3 and (summary.trials["requests_done"] == 3).all(), summary.trials
        curve = pd.read_csv(summary.sweep_dir / "convergence.csv")
        assert list(curve["trial"]) == [1, 2, 3]
        assert ("best" if tag == "one" else "hypervolume") in curve
        assert (summary.sweep_dir / "convergence.png").stat().st_size > 0
        study = optuna.load_study(
            study_name="digits-agnostic-class-ugclu",
            storage=optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(summary.sweep_dir / "optuna-journal.log"))
            ),
        )
        assert len(study.trials) == 3 and len(study.directions) == (1 if tag == "one" else 2)
        assert summary.best["best_trial"] in set(summary.trials["trial_id"])
        assert lines[-1].startswith(("converged: ", "not converged: ")), lines[-1]


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_a_narrowed_space_starts_from_the_defaults_projected_into_it(local_ray, tmp_path, monkeypatch):
    """lr narrowed below the default, one-value categoricals that exclude the defaults of K_in (6) and decay
    (true): the first trial is the whole default point projected into the space, and the sweep says so. The
    defaults are pinned in the config's methods section, so retuning the shipped defaults leaves this test be."""
    monkeypatch.chdir(tmp_path)
    space = _space(
        tmp_path,
        "  lr: {type: float, low: 0.01, high: 0.05}\n"
        "  K_in: {type: categorical, choices: [2]}\n"
        "  decay: {type: categorical, choices: [false]}\n"
        "  gamma: {type: float, low: 0.1, high: 10.0, log: true}\n",
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lines: list[str] = []
    summary = clutune.sweep(
        "digits-agnostic-class",
        method="ugclu",
        trials=2,
        overrides=_sets(tmp_path, TWO, *PINNED),
        space=space,
        concurrency=2,
        tracking_uri=uri,
        log=lines.append,
    )
    assert lines[0] == (
        "first trial: the method's tuned defaults, projected into the space "
        "(lr 0.2 -> 0.05, K_in 6 -> 2, decay True -> False); sampler gp; pick: knee over kl_oracle_all, avg_gap"
    )
    first = summary.trials.sort_values("number").iloc[0]
    assert (first["lr"], first["K_in"], first["decay"], first["gamma"]) == (0.05, 2, False, 0.5)
    assert (summary.trials["requests_done"] == 3).all() and (summary.trials["status"] == "OK").all()

    # The convergence record: folder, parent run (reference point, verdict), report.
    curve = pd.read_csv(summary.sweep_dir / "convergence.csv")
    assert list(curve.columns) == [
        "trial",
        "trial_id",
        "state",
        "requests_done",
        "complete",
        "objective_kl_oracle_all",
        "objective_avg_gap",
        "hypervolume",
    ]
    assert len(curve) == 2 and curve["complete"].all() and curve["hypervolume"].iloc[-1] > 0
    client = MlflowClient(uri)
    parent = client.get_run(summary.parent_run_id)
    reference = json.loads(parent.data.params["convergence.reference_point"])
    worst = curve[["objective_kl_oracle_all", "objective_avg_gap"]].max()
    assert reference == pytest.approx(list(worst * 1.1))
    assert parent.data.metrics["converged"] in (0.0, 1.0)
    assert {"convergence.csv", "convergence.png"} <= {a.path for a in client.list_artifacts(summary.parent_run_id)}
    page = write_report(str(summary.sweep_dir), tmp_path / "report.html").read_text()
    assert '<p id="converged">' in page and 'alt="convergence.png"' in page


PBT_STREAM = "scenario.requests=[{learn: {task: 0}}, {learn: {task: 1}}, {unlearn: {classes: [1]}}, {learn: {task: 2}}]"
# Nothing perturbed: the copy must then continue exactly as its source does.
PBT_SETS = [
    PBT_STREAM,
    "sweep.scheduler=pbt",
    "sweep.pbt.interval=2",
    "sweep.pbt.quantile=0.5",
    "sweep.pbt.resample_probability=0",
    "sweep.pbt.perturbation_factors=[1.0, 1.0]",
]


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_pbt_records_lineage_and_copies_state_exactly(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = _space(tmp_path, SPACE)
    lines: list[str] = []
    summary = clutune.sweep(
        "digits-agnostic-class",
        method="ugclu",
        trials=2,
        overrides=_sets(tmp_path, *PBT_SETS),
        space=space,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        log=lines.append,
    )
    assert lines[0].endswith("sampler random (pbt population); pick: best kl_oracle_all"), lines[0]
    rows = pd.read_parquet(summary.sweep_dir / "results.parquet")
    # One continuous stream per trial: one row per request.
    assert sorted(rows.groupby("trial_id")["request"].apply(list).tolist()) == [[0, 1, 2, 3], [0, 1, 2, 3]]
    copied = rows[rows["exploited_from"] != ""]
    assert len(copied) == 1 and copied["request"].iloc[0] == 2, rows[["trial_id", "request", "exploited_from"]]
    target, source = copied["trial_id"].iloc[0], copied["exploited_from"].iloc[0]
    assert source in set(rows["trial_id"]) and source != target
    by = {t: f.set_index("request") for t, f in rows.groupby("trial_id")}
    # Before the copy: the target's own hyperparameters; after it: the source's, and the source's exact rows.
    assert (by[target].loc[[0, 1], "hp_lr"] != by[source].loc[[0, 1], "hp_lr"]).all()
    metrics = ["kl_oracle_all", "avg_gap", "acc_test", "acc_remain", "samples_processed", "hp_lr", "hp_gamma"]
    pd.testing.assert_frame_equal(by[target].loc[[2, 3], metrics], by[source].loc[[2, 3], metrics])
    assert (by[source]["exploited_from"] == "").all()


@pytest.mark.slow  # a six-trial PBT sweep
def test_a_population_larger_than_the_cpus_copies_from_checkpoints_still_kept(local_ray, tmp_path, monkeypatch):
    """Six members on two CPUs: half of them copy a source that may run on (and checkpoint again) before the copy
    gets a CPU to restore on. Every member still runs the whole stream, none errors."""
    monkeypatch.chdir(tmp_path)
    stream = (
        "scenario.requests=[{learn: {task: 0}}, {learn: {task: 1}}, {unlearn: {classes: [1]}}, {learn: {task: 2}}, "
        "{learn: {task: 3}}, {unlearn: {classes: [5]}}]"
    )
    # checkpoint_seconds=0 would checkpoint every request; a population checkpoints at its decisions regardless.
    sets = [*PBT_SETS, stream, "sweep.pbt.quantile=0.5", "sweep.max_failures=0", "sweep.checkpoint_seconds=0"]
    summary = clutune.sweep(
        "digits-agnostic-class",
        method="ugclu",
        trials=6,
        overrides=_sets(tmp_path, *sets),
        space=_space(tmp_path, SPACE),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        log=lambda *a, **k: None,
    )
    assert (summary.trials["status"] == "OK").all() and (summary.trials["requests_done"] == 6).all(), summary.trials
    rows = pd.read_parquet(summary.sweep_dir / "results.parquet")
    copies = rows[rows["exploited_from"] != ""]
    assert sorted(copies["request"]) == [2, 2, 2, 4, 4, 4]  # at each decision the worst half copied the best half


def test_pbt_refuses_a_checkpoint_cadence_of_its_own(tmp_path):
    sets = _sets(tmp_path, *PBT_SETS, "sweep.checkpoint_every=1")
    with pytest.raises(UserError, match=r"sweep.checkpoint_every does not apply with --scheduler pbt"):
        clutune.sweep("digits-agnostic-class", method="ugclu", trials=2, overrides=sets, space=_space(tmp_path, SPACE))
    assert not (tmp_path / "sweeps").exists()


def test_pbt_refuses_a_policy_without_an_oracle_in_a_window(tmp_path):
    sets = _sets(tmp_path, *PBT_SETS, "oracle.policy=unlearn")
    with pytest.raises(UserError, match=r"sweep.pbt.interval 2 with oracle.policy unlearn: requests 0-1 get no"):
        clutune.sweep("digits-agnostic-class", method="ugclu", trials=2, overrides=sets, space=_space(tmp_path, SPACE))
    assert not (tmp_path / "sweeps").exists()
