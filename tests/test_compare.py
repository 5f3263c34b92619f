"""`clutune compare`: methods x seeds as parallel Ray tasks on one scenario, sharing one set of oracles."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

import clutune
from clutune.cli import main
from clutune.errors import UserError
from clutune.platform.run.compare import summary_table


@pytest.fixture
def scenario(tmp_path, tiny_scenario):
    """The tiny scenario's first three requests, with five-epoch oracles."""
    requests = [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"classes": [1]}}]
    oracle = {"epochs": 5, "cache_dir": str(tmp_path / "oracles")}
    return tiny_scenario(tmp_path, "tiny-compare", oracle=oracle, requests=requests, file="tiny")


def test_compare_runs_every_method_and_seed_on_shared_oracles(local_ray, scenario, tmp_path, capsys, fast_sets):
    out = tmp_path / "out"
    code = main(
        ["compare", "--config", str(scenario), "--methods", "ugclu,finetune", "--seeds", "0,1"]
        + ["--out", str(out)]
        + fast_sets
    )
    assert code == 0
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert len(rows) == 2 * 2 * 3
    assert {(r["method"], r["seed"]) for r in rows} == {(m, s) for m in ("ugclu", "finetune") for s in (0, 1)}
    # every run scored request k against the same oracle
    for k in range(3):
        assert len({r["oracle_key"] for r in rows if r["request"] == k}) == 1
    cached = [p for p in (tmp_path / "oracles").iterdir() if not p.name.startswith(".") and p.name != "leases"]
    assert len(cached) == 3
    printed = capsys.readouterr().out
    assert "| ugclu |" in printed and "| finetune |" in printed and "±" in printed
    table = [line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 3  # header and one row per method, under the caption that names the test
    long = pd.read_csv(out / "comparison.csv").set_index(["method", "metric"])  # the p-values the caption points to
    assert {"comparator", "p_holm", "tied", "exact"} <= set(long.columns) and not long["exact"].any()
    metrics = set(summary_table(pd.read_parquet(out / "results.parquet")).columns.get_level_values(0))
    assert len(long) == 2 * len(metrics)


def test_compare_rejects_unknown_method_before_work(scenario, tmp_path):
    with pytest.raises(UserError, match="unknown method 'nope'"):
        clutune.compare(str(scenario), methods=["ugclu", "nope"], seeds=[0], out=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "oracles").exists()


def test_compare_refuses_a_scenario_a_method_cannot_serve(scenario, tmp_path):
    with pytest.raises(UserError, match="request 2"):
        clutune.compare(str(scenario), methods=["ugclu", "clpu"], seeds=[0], out=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "oracles").exists()


def test_compare_refuses_a_bare_key_no_method_has(scenario, tmp_path):
    with pytest.raises(UserError, match="gama"):
        clutune.compare(
            str(scenario), methods=["ugclu", "finetune"], seeds=[0], out=tmp_path / "out", overrides=["gama=2"]
        )
