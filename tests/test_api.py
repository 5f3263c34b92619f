"""The Python API from a notebook's point of view: dict configs, keyword options, DataFrames equal to the files
written, two calls in one process, and a failed grid's parent run marked FAILED."""

from __future__ import annotations

import pandas as pd
import pytest
import ray
from mlflow.tracking import MlflowClient

import clutune
from clutune.errors import RunFailed, UserError


def _config(tmp_path, **oracle) -> dict:
    """A tiny scenario as a plain dict: no file anywhere."""
    return {
        "name": "api-tiny",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [32]},
        "oracle": {"epochs": 4, "cache_dir": str(tmp_path / "oracles"), **oracle},
        "scenario": {
            "requests": [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"classes": [1]}}],
        },
        "sweep": {"storage_path": str(tmp_path / "sweeps"), "sampler": "random", "asha": False},
    }


FAST = {"epochs_per_learn": 2, "iters_per_unlearn": 5, "buffer_size": 40}


def _quiet(_line: str) -> None:
    pass


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_compare_and_sweep_from_a_dict_return_what_they_wrote(tmp_path, monkeypatch, capfd):
    """Quiet as well: with a no-op ``log`` nothing reaches stdout or stderr (Ray's, Tune's, MLflow's and Optuna's
    lines are in each folder's libraries.log), and the folder the calls run in stays empty."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = _config(tmp_path)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    ray_before = ray.is_initialized()  # another test of the session may hold Ray: a call leaves it as it was
    first = clutune.compare(
        config,
        methods=["er", "finetune"],
        seeds=[0, 1],
        out=tmp_path / "c1",
        overrides=FAST,
        tracking_uri=uri,
        log=_quiet,
    )
    assert ray.is_initialized() == ray_before  # a Ray the call started is shut down with it
    on_disk = pd.read_parquet(tmp_path / "c1" / "results.parquet")
    pd.testing.assert_frame_equal(first.rows.reset_index(drop=True), on_disk.reset_index(drop=True))
    assert len(first.rows) == 2 * 2 * 3 and set(first.table.index) == {"er", "finetune"}
    assert "| er |" in (tmp_path / "c1" / "comparison.md").read_text()
    summary = first.summary  # the table in long form: one row per (method, metric)
    assert list(summary.columns) == [
        *("method", "metric", "mean", "lo", "hi", "n", "comparator", "p_holm", "tied", "exact")
    ]
    kl = summary[summary["metric"] == "kl_oracle_all"].set_index("method")
    assert set(kl.index) == {"er", "finetune"} and (kl["n"] == 2).all()
    assert kl.loc["er", "mean"] == pytest.approx(first.table.loc["er", ("kl_oracle_all", "mean")])
    assert MlflowClient(uri).get_run(first.parent_run_id).info.status == "FINISHED"

    # a second grid in the same process: the oracles come from the cache, the record is a new parent run
    second = clutune.compare(
        config,
        methods=["er"],
        seeds=[0],
        out=tmp_path / "c2",
        overrides={**FAST, "lr": 0.02},
        tracking_uri=uri,
        log=_quiet,
    )
    assert second.oracles_trained == 0 and second.parent_run_id != first.parent_run_id
    assert (second.rows["method"] == "er").all()
    assert config["oracle"]["epochs"] == 4 and "lr" not in config  # the caller's dict is never changed

    found = clutune.sweep(
        config, method="er", trials=2, concurrency=1, overrides={**FAST, "lr": 0.02}, tracking_uri=uri, log=_quiet
    )
    assert ray.is_initialized() == ray_before
    assert len(found.trials) == 2 and (found.trials["requests_done"] == 3).all()
    pd.testing.assert_frame_equal(
        found.trials.reset_index(drop=True), pd.read_csv(found.sweep_dir / "trials.csv"), check_dtype=False
    )
    assert found.best["best_trial"] in set(found.trials["trial_id"])

    assert capfd.readouterr() == ("", "")
    assert list((tmp_path / "cwd").iterdir()) == [] and (tmp_path / "mlruns").is_dir()  # beside mlflow.db
    compare_log = (tmp_path / "c1" / "libraries.log").read_text()
    assert "Creating initial MLflow database tables" in compare_log
    assert ray_before or "Started a local Ray instance" in compare_log  # Ray's start line, where the call started it
    assert "A new study created" in (found.sweep_dir / "libraries.log").read_text()


def test_run_returns_its_rows(tmp_path):
    result = clutune.run(_config(tmp_path), method="er", out=tmp_path / "r", overrides=FAST, tracking=False, log=_quiet)
    pd.testing.assert_frame_equal(result.rows, pd.read_parquet(tmp_path / "r" / "results.parquet"))
    assert list(result.rows["request"]) == [0, 1, 2]


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_a_failed_grid_marks_its_parent_failed_from_python(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # ugclu with a huge unlearning step diverges; a fixed grid refuses to summarise a run it lost
    wild = {"epochs_per_learn": 1, "iters_per_unlearn": 5, "alpha0_unlearn": 1e5, "clip": 0.0, "K_in": 0}
    ray_before = ray.is_initialized()
    with pytest.raises(RunFailed):
        clutune.compare(
            _config(tmp_path),
            methods=["ugclu"],
            seeds=[0],
            out=tmp_path / "c",
            overrides=wild,
            tracking_uri=uri,
            log=_quiet,
        )
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("api-tiny")
    parents = [
        r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("clutune.role") == "compare"
    ]
    assert [p.info.status for p in parents] == ["FAILED"]
    assert ray.is_initialized() == ray_before  # a failed grid shuts down a Ray it started too


def test_bad_options_are_refused_before_anything_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path)
    with pytest.raises(UserError, match="methods='er': expected a non-empty list of names"):
        clutune.compare(config, methods="er", seeds=[0], out=tmp_path / "c", log=_quiet)
    with pytest.raises(UserError, match="--seeds '0': a seed is an integer"):
        clutune.compare(config, methods=["er"], seeds=["0"], out=tmp_path / "c", log=_quiet)
    with pytest.raises(UserError, match="unknown method"):
        clutune.study(config, methods=["nope"], out=tmp_path / "s", log=_quiet)
    with pytest.raises(UserError, match="expected a Config, a mapping"):
        clutune.sweep(42, method="er", trials=1, log=_quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
