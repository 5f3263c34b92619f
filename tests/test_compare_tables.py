"""The committed comparison tables and the numbers README quotes are what the committed rows give.

bench/compare_tables.py rebuilds every compare-*.md, its long form and compare-tables.json from the rows under
bench/results; here the rebuild is run into a fresh folder and compared with the committed files, and one table's
Holm-corrected p-values are recomputed with scipy from results.parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from recipes import load_bench
from scipy import stats

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def _holm(p: list[float]) -> list[float]:
    """Holm's step-down adjustment spelled out: the i-th smallest times (m - i), running maximum, capped at 1."""
    order = np.argsort(p)
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


@pytest.mark.slow  # eight tables rebuilt (about 10 s): `make test` runs it, as `make results --check` does
def test_the_committed_tables_and_summary_are_what_the_committed_rows_give(tmp_path):
    load_bench("compare_tables").rebuild(RESULTS, tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len([n for n in written if n.endswith(".md")]) == 8 and "compare-tables.json" in written
    for name in written:
        assert (tmp_path / name).read_text() == (RESULTS / name).read_text(), name


def test_the_quoted_p_is_holm_over_paired_t_tests_against_the_best_approximate_method():
    """mnist1d-random-b500: retrain is lowest by far, yet the comparator is the best approximate method, and
    every other approximate method's p is the Holm-adjusted paired t-test against it over the three seeds."""
    summary = json.loads((RESULTS / "compare-tables.json").read_text())["tables"]["compare-mnist1d-random-b500"]
    column = summary["metrics"]["kl_oracle_all"]
    rows = pd.read_parquet(RESULTS / "compare-runs" / "mnist1d-random-b500" / "results.parquet")
    per_run = rows.groupby(["method", "seed"])["kl_oracle_all"].mean().unstack("seed")
    approximate = per_run.drop(index="retrain")
    best = approximate.mean(axis=1).idxmin()
    assert per_run.mean(axis=1).idxmin() == "retrain" and column["comparator"] == best
    assert not column["methods"]["retrain"]["tied"] and column["methods"]["retrain"]["rank"] is None
    others = [m for m in approximate.index if m != best]
    raw = [stats.ttest_rel(per_run.loc[best], per_run.loc[m]).pvalue for m in others]
    for method, p in zip(others, _holm(raw), strict=True):
        assert column["methods"][method]["p_holm"] == pytest.approx(p, rel=1e-9), method
        assert column["methods"][method]["tied"] == (p >= 0.05)
    long = pd.read_csv(RESULTS / "compare-mnist1d-random-b500.csv").query("metric == 'kl_oracle_all'")
    assert set(long["comparator"]) == {best}
    assert dict(zip(long["method"], long["p_holm"], strict=True))[others[0]] == pytest.approx(_holm(raw)[0])


def test_a_table_knows_its_oracle_members_from_its_kept_commands(tmp_path):
    members = load_bench("compare_tables")._members
    command = "clutune compare --config digits-random --seeds 100,101 --set buffer_size=200"
    (tmp_path / "commands.json").write_text(json.dumps([{"command": command, "wall_seconds": None}]))
    assert members(tmp_path) == 1
    batches = [{"command": f"{command} --set oracle.ensemble=8", "wall_seconds": 3}] * 2
    (tmp_path / "commands.json").write_text(json.dumps(batches))
    assert members(tmp_path) == 8
    batches[1] = {"command": f"{command} --set oracle.ensemble=4", "wall_seconds": 3}
    (tmp_path / "commands.json").write_text(json.dumps(batches))
    with pytest.raises(AssertionError, match="different oracle ensembles"):
        members(tmp_path)


def test_a_diverged_run_is_kept_apart_and_named_above_its_table(tmp_path):
    tables = load_bench("compare_tables")
    rows = pd.DataFrame(
        [
            {"run_id": f"{m}-{s}", "method": m, "seed": s, "request": r, "kl_oracle_all": 0.1}
            for m in ("ugclu", "ewc")
            for s in (100, 101)
            for r in range(4)
            if not (m == "ewc" and s == 101 and r >= 2)
        ]
    )
    assert tables.stopped_runs(rows) == [{"method": "ewc", "seed": 101, "request": 2}]
    batch = tmp_path / "runs" / "digits-random-b200-all"
    batch.mkdir(parents=True)
    rows.to_parquet(batch / "results.parquet")
    error = "clutune: error: 1 of 4 runs diverged, first method ewc, seed 101 at request 2: not finite"
    (batch / "diverged.json").write_text(json.dumps({"error": error, "runs": tables.stopped_runs(rows)}))
    kept = tmp_path / "compare-runs" / "digits-random-b200"
    tables._keep([batch], kept, [["compare", "--methods", "ugclu,ewc"]], klom=True)
    complete = pd.read_parquet(kept / "results.parquet")
    assert len(complete) == 12 and not ((complete["method"] == "ewc") & (complete["seed"] == 101)).any()
    assert len(pd.read_parquet(kept / "diverged.parquet")) == 2 and not (kept / "klom.csv.gz").exists()
    assert json.loads((kept / "diverged.json").read_text()) == [
        {"method": "ewc", "seed": 101, "request": 2, "error": error}
    ]
    header = tables._header(kept, complete)
    assert "ewc diverged on seed 101 at request 2: that run is left out of the table" in header
