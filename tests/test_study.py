"""Long-stream studies: oracle policies mark the rows they skip, an exception loses no measured row, and a study
whose driver is SIGKILLed resumes to exactly the rows and MLflow steps of an uninterrupted run."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from clutune.cli import main
from clutune.clu.methods.finetune import Finetune
from clutune.core.config import load_config
from clutune.core.experiment import ExperimentRun, method_hparams, prepare
from clutune.core.results import read_parts

FAST = ["oracle.epochs=3", "epochs_per_learn=1", "iters_per_unlearn=5"]


def _sets(tmp: Path, n: int, *extra: str) -> list[str]:
    return [*FAST, f"scenario.generate.n_requests={n}", f"oracle.cache_dir={tmp / 'oracles'}", *extra]


def _args(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def test_every_k_rows_without_an_oracle_are_marked(tmp_path):
    n, k = 12, 5
    sets = _sets(tmp_path, n, "oracle.policy=every_k", f"oracle.every={k}")
    code = main(
        ["run", "--config", "digits-long-200", "--method", "finetune", "--out", str(tmp_path / "out"), "--no-tracking"]
        + _args(sets)
    )
    assert code == 0
    rows = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert list(rows["request"]) == list(range(n))
    evaluated = rows[rows["oracle_evaluated"]]
    assert list(evaluated["request"]) == [4, 9, 11]  # every k-th request and the last
    assert evaluated["oracle_key"].nunique() == math.ceil(n / k)
    skipped = rows[~rows["oracle_evaluated"]]
    for col in ("kl_oracle_all", "avg_gap", "oracle_acc_test", "gap_remain", "oracle_mia_member_rate"):
        assert skipped[col].isna().all() and evaluated[col].notna().all(), col
    assert skipped["acc_test"].notna().all() and skipped["dead_units"].notna().all()


def test_an_exception_at_request_100_leaves_100_readable_rows(tmp_path, monkeypatch):
    real_learn = Finetune.learn

    def failing_learn(self, request):
        if request.index == 100:
            raise RuntimeError("injected failure at request 100")
        real_learn(self, request)

    monkeypatch.setattr(Finetune, "learn", failing_learn)
    out = tmp_path / "out"
    sets = _sets(tmp_path, 130, "oracle.policy=final", "scenario.generate.unlearn_ratio=0.0")
    with pytest.raises(RuntimeError, match="injected"):
        main(
            ["run", "--config", "digits-long-200", "--method", "finetune", "--out", str(out), "--no-tracking"]
            + _args(sets)
        )
    assert len(read_parts(out)) == 100
    rows = pd.read_parquet(out / "results.parquet")
    assert list(rows["request"]) == list(range(100))
    assert rows["acc_learn"].notna().all()


@pytest.mark.slow  # a driver killed mid-study, then resumed
def test_killed_study_resumes_without_duplicates(tmp_path):
    n = 130
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "study"
    sets = _sets(tmp_path, n, "oracle.policy=every_k", "oracle.every=50", "sweep.checkpoint_every=7")
    cmd = [str(Path(sys.executable).parent / "clutune"), "study", "--config", "digits-long-200"]
    cmd += ["--methods", "er,finetune", "--seeds", "0", "--out", str(out), "--num-cpus", "2", "--tracking-uri", uri]
    cmd += _args(sets)
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if " request " in line and "/130 " in line and int(line.split(" request ")[1].split("/")[0]) >= 100:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert any("/130 " in line for line in lines), "".join(lines[-30:])
    assert not (out / "results.parquet").exists() or len(pd.read_parquet(out / "results.parquet")) < 2 * n

    resumed = subprocess.run(cmd + ["--resume"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = pd.read_parquet(out / "results.parquet")
    assert len(rows) == 2 * n
    assert not rows.duplicated(["run_id", "request"]).any()
    assert sorted(rows.groupby("method")["request"].apply(list)["er"]) == list(range(n))
    assert (out / "curves.png").exists() and "drift slope" in (out / "summary.md").read_text()

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("digits-long-200")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("clutune.role") == "study"]
    children = [r for r in runs if r.data.tags.get("clutune.role") == "run"]
    assert len(parents) == 1 and len(children) == 2
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "samples_processed")]
        assert sorted(steps) == list(range(n)), child.info.run_name

    # The resumed run equals an uninterrupted one, row for row (checkpoints every 7 requests).
    config = load_config("digits-long-200", sets)
    prep = prepare(config)
    bare = {"epochs_per_learn": 1, "iters_per_unlearn": 5}
    whole = ExperimentRun(prep, "finetune", method_hparams(config, "finetune", "digits", bare), 0)
    expected = pd.DataFrame(whole.run())
    got = rows[rows["method"] == "finetune"].sort_values("request").reset_index(drop=True)
    for col in ("acc_test", "acc_remain", "kl_oracle_all", "samples_processed", "dead_units", "effective_rank"):
        pd.testing.assert_series_equal(got[col], expected[col], check_names=False, rtol=1e-12, atol=0)
