"""Tables that compare methods: 95% Student-t intervals over seeds and significance marks against the best.

The intervals are recomputed here from results.parquet with scipy alone; the marks are checked on constructed
cases whose answer is known (one method clearly best, two tied), paired and unpaired.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clutune.platform.reports.report import table_rows, write_report
from clutune.platform.reports.stats import holm, long_form, method_table
from clutune.platform.run.compare import TABLE_METRICS, format_table, summary_table

SEEDS = (0, 1, 2, 3, 4)


def _results(kl: dict[str, list[float]], n_requests: int = 4, oracle_key=lambda seed, r: f"o{r}") -> pd.DataFrame:
    """Rows of a comparison: per (method, seed) run, ``n_requests`` requests whose mean KL is ``kl[method][i]``
    (spread around it over requests), other metrics derived from it."""
    rng = np.random.default_rng(0)
    records = []
    for method, per_seed in kl.items():
        for seed, value in zip(SEEDS, per_seed, strict=False):
            wiggle = rng.normal(0, 0.01, n_requests)
            wiggle -= wiggle.mean()
            for r in range(n_requests):
                v = value + wiggle[r]
                records.append(
                    {
                        "run_id": f"{method}-{seed}",
                        "method": method,
                        "seed": seed,
                        "request": r,
                        "kind": "learn" if r % 2 == 0 else "unlearn",
                        "oracle_key": oracle_key(seed, r),
                        **{m: v * (i + 1) for i, m in enumerate(TABLE_METRICS)},
                        "kl_oracle_unlearn": v if r % 2 else math.nan,
                    }
                )
    return pd.DataFrame.from_records(records)


def test_intervals_recomputed_with_scipy_from_results_parquet_equal_the_tables(tmp_path):
    kl = {"ugclu": [0.50, 0.52, 0.55], "er": [0.60, 0.66, 0.61, 0.64], "finetune": [0.9]}
    _results(kl).to_parquet(tmp_path / "results.parquet")
    rows = pd.read_parquet(tmp_path / "results.parquet")
    table = summary_table(rows)
    text = format_table(table, "comparison.csv")
    report = write_report(str(tmp_path), tmp_path / "report.html")
    page = report.read_text()
    for method, frame in rows.groupby("method"):
        for metric in ("kl_oracle_all", "kl_oracle_unlearn", "acc_test", "seconds"):
            per_run = frame.groupby("seed")[metric].mean().dropna().to_numpy()
            n = len(per_run)
            mean = per_run.mean()
            got = table.loc[method, metric]
            assert got["mean"] == pytest.approx(mean, rel=1e-12) and got["n"] == n
            if n < 2:
                assert math.isnan(got["lo"]) and math.isnan(got["hi"])
                assert f"{mean:.4g} (n=1)" in text  # never "± 0"
                continue
            lo, hi = stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(per_run))
            assert (got["lo"], got["hi"]) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
            assert f"{mean:.4g} ± {(hi - lo) / 2:.2g}" in text.split(f"| {method} |")[1].splitlines()[0]
            cell = re.search(rf'<tr data-group="{method}">.*?<td data-metric="{metric}" ([^>]*)>', page)[1]
            attrs = dict(re.findall(r'data-([a-z_]+)="([^"]*)"', cell))
            assert float(attrs["lo"]) == pytest.approx(lo, rel=1e-12)
            assert float(attrs["hi"]) == pytest.approx(hi, rel=1e-12)
    assert "95% Student-t confidence interval" in text and "Welch" in text  # seeds differ: not paired
    assert "Welch" in page and "± 0 " not in text


def _marks(table: pd.DataFrame, metric: str = "kl_oracle_all") -> dict[str, bool]:
    return {m: bool(v) for m, v in table[(metric, "tied")].items()}


def test_one_clearly_best_method_and_two_tied_get_the_right_marks():
    rows = _results(
        {
            "best": [0.10, 0.11, 0.09, 0.10, 0.105],
            "tied_a": [0.50, 0.55, 0.45, 0.52, 0.48],
            "tied_b": [0.51, 0.46, 0.54, 0.49, 0.50],
        }
    )
    table = summary_table(rows)
    assert table.attrs["paired"] and "paired t-test" in format_table(table)
    assert _marks(table) == {"best": True, "tied_a": False, "tied_b": False}
    assert list(table.index) == ["best", "tied_a", "tied_b"] or list(table.index) == ["best", "tied_b", "tied_a"]
    # higher is better for accuracy: the best there is the method with the largest values
    assert _marks(table, "acc_test") == {"best": False, "tied_a": True, "tied_b": True}
    # a column without a direction (MIA) is not ranked
    assert not any(_marks(table, "mia_member_rate").values())

    # two tied at the top and one clearly worse: both top methods marked
    top = summary_table(
        _results(
            {
                "a": [0.20, 0.25, 0.22, 0.18, 0.24],
                "b": [0.21, 0.19, 0.26, 0.23, 0.2],
                "worse": [0.9, 0.95, 0.92, 0.88, 0.91],
            }
        )
    )
    assert _marks(top) == {"a": True, "b": True, "worse": False}
    assert "**" in format_table(top).split("| a |")[1].splitlines()[0]


def test_paired_runs_use_the_paired_test_and_unpaired_ones_welch():
    """b is about 0.05 above a on every seed, with a seed-to-seed spread far larger than that shift: paired by
    seed the difference is clear; as independent samples (Welch) it is not."""
    a = [0.2, 0.5, 0.8, 0.3, 0.6]
    b = [v + 0.05 + e for v, e in zip(a, [0.004, -0.003, 0.002, -0.004, 0.001], strict=True)]
    paired = summary_table(_results({"a": a, "b": b}))
    assert paired.attrs["paired"] and _marks(paired) == {"a": True, "b": False}
    per_run = pd.DataFrame({"method": ["a"] * 5 + ["b"] * 5, "seed": list(SEEDS) * 2, "kl_oracle_all": a + b})
    p = stats.ttest_rel(a, b).pvalue
    assert method_table(per_run, "method", ["kl_oracle_all"], paired=True).loc["b", ("kl_oracle_all", "p_holm")] == (
        pytest.approx(p)
    )
    # different oracles per seed pair break the pairing: Welch, and no significant difference
    unpaired = summary_table(_results({"a": a, "b": b}, oracle_key=lambda seed, r: f"o{seed}-{r}"))
    assert not unpaired.attrs["paired"] and _marks(unpaired) == {"a": True, "b": True}
    assert unpaired.loc["b", ("kl_oracle_all", "p_holm")] == pytest.approx(
        stats.ttest_ind(a, b, equal_var=False).pvalue
    )


def test_a_method_missing_a_seed_stays_paired_over_the_seeds_both_ran():
    """A run left out (it diverged) leaves its method four of the five seeds: the table stays paired, and the
    test pairs the four seeds both methods ran."""
    a = [0.2, 0.5, 0.8, 0.3, 0.6]
    b = [v + 0.05 + e for v, e in zip(a, [0.004, -0.003, 0.002, -0.004, 0.001], strict=True)]
    rows = _results({"a": a, "b": b})
    rows = rows[~((rows["method"] == "b") & (rows["seed"] == SEEDS[-1]))]
    table = summary_table(rows)
    assert table.attrs["paired"] and table.loc["b", ("kl_oracle_all", "n")] == 4
    assert table.loc["b", ("kl_oracle_all", "p_holm")] == pytest.approx(stats.ttest_rel(a[:4], b[:4]).pvalue, rel=1e-6)
    disjoint = _results({"a": a[:2], "b": b[:2]})
    disjoint.loc[disjoint["method"] == "b", "seed"] += 10
    assert not summary_table(disjoint).attrs["paired"]  # no seed in common: Welch


def test_holm_adjusts_step_down_and_stays_monotone():
    # sorted: 0.005 (x5), 0.01 (x4), 0.03 (x3), 0.04 (x2), 0.2 (x1), each at least the one before, capped at 1
    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.2, 0.025])
    assert holm([0.5, float("nan"), 0.6]) == pytest.approx([1.0, float("nan"), 1.0], nan_ok=True)


def test_a_table_of_one_seed_reads_plain_values_without_n_1(tmp_path):
    rows = _results({"a": [0.10], "b": [0.30]})
    table = summary_table(rows)
    text = format_table(table, "comparison.csv")
    rows.to_parquet(tmp_path / "results.parquet")
    page = write_report(str(tmp_path), tmp_path / "report.html").read_text()
    for method in ("a", "b"):
        mean = rows.loc[rows["method"] == method, "kl_oracle_all"].mean()
        assert f"| {method} | {mean:.4g} |" in text or f"| {method} | **{mean:.4g}** |" in text
    assert "(n=" not in text and "(n=" not in page and "± 0 " not in text


def test_the_long_form_has_one_row_per_method_and_metric_with_the_tables_numbers():
    rows = _results({"ugclu": [0.50, 0.52, 0.55], "er": [0.60, 0.66, 0.61], "finetune": [0.9, 0.95, 0.93]})
    table = summary_table(rows)
    long = long_form(table)
    assert list(long.columns) == [
        *("method", "metric", "mean", "lo", "hi", "n", "comparator", "p_holm", "tied", "exact")
    ]
    assert len(long) == 3 * len(TABLE_METRICS) and not long.duplicated(["method", "metric"]).any()
    assert list(dict.fromkeys(long["method"])) == list(table.index)  # the table's order: best KL first
    for r in long.itertuples():
        for stat in ("mean", "lo", "hi", "n"):
            assert getattr(r, stat) == pytest.approx(table.loc[r.method, (r.metric, stat)], nan_ok=True)
        assert r.p_holm == pytest.approx(table.loc[r.method, (r.metric, "p_holm")], nan_ok=True)
        assert r.tied == bool(table.loc[r.method, (r.metric, "tied")])
    kl = long[long["metric"] == "kl_oracle_all"].set_index("method")
    assert kl.loc["ugclu", "tied"] and not kl.loc["finetune", "tied"] and math.isnan(kl.loc["ugclu", "p_holm"])
    assert set(kl["comparator"]) == {"ugclu"} and not long["exact"].any()
    assert long["n"].dtype.kind == "i" and long["tied"].dtype == bool


def test_an_exact_retrain_best_by_value_is_shown_as_the_floor_and_the_marks_rank_the_approximate_methods():
    """retrain has the lowest KL on every seed; the comparator is still the best approximate method (ugclu), and
    its tie with er and clear lead over finetune decide the marks."""
    kl = {
        "retrain": [0.05, 0.06, 0.05, 0.055, 0.052],
        "ugclu": [0.30, 0.34, 0.29, 0.31, 0.33],
        "er": [0.32, 0.31, 0.33, 0.30, 0.35],
        "finetune": [0.90, 0.95, 0.92, 0.88, 0.91],
    }
    rows = _results(kl)
    table = summary_table(rows)
    assert table.index[0] == "retrain" and table.attrs["floors"] == ["retrain"]
    assert _marks(table) == {"retrain": False, "ugclu": True, "er": True, "finetune": False}
    assert set(table[("kl_oracle_all", "comparator")]) == {"ugclu"}
    assert math.isnan(table.loc["retrain", ("kl_oracle_all", "p_holm")])
    text = format_table(table, "comparison.csv")
    assert "| retrain (exact) |" in text and "**" not in text.split("| retrain (exact) |")[1].splitlines()[0]
    assert "ugclu for kl_oracle_all" in text and "comparison.csv" in text
    html = {r["group"]: r for r in table_rows(table)}  # the HTML report's rows: the same label, no mark
    assert html["retrain"]["label"] == "retrain (exact)" and not any(c["tied"] for c in html["retrain"]["cells"])


def test_the_p_in_the_long_form_is_a_holm_adjusted_paired_t_test_recomputed_by_scipy(tmp_path):
    kl = {
        "retrain": [0.05, 0.06, 0.05, 0.055, 0.052],
        "ugclu": [0.30, 0.34, 0.29, 0.31, 0.33],
        "er": [0.33, 0.36, 0.30, 0.34, 0.35],
        "lwf": [0.45, 0.41, 0.48, 0.40, 0.44],
        "finetune": [0.90, 0.95, 0.92, 0.88, 0.91],
    }
    rows = _results(kl)
    long_form(summary_table(rows)).to_csv(tmp_path / "comparison.csv", index=False)
    written = pd.read_csv(tmp_path / "comparison.csv").query("metric == 'kl_oracle_all'").set_index("method")
    per_run = rows.groupby(["method", "seed"])["kl_oracle_all"].mean().unstack("seed")
    others = ["er", "lwf", "finetune"]
    raw = [stats.ttest_rel(per_run.loc["ugclu"], per_run.loc[m]).pvalue for m in others]
    m = len(raw)
    order = np.argsort(raw)
    holm_p = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):  # Holm's step-down, spelled out: (m - rank) * p, monotone, capped at 1
        running = max(running, min(1.0, (m - rank) * raw[i]))
        holm_p[i] = running
    for method, expected in zip(others, holm_p, strict=True):
        assert written.loc[method, "p_holm"] == pytest.approx(expected, rel=1e-9)
        assert written.loc[method, "comparator"] == "ugclu"
    assert written.loc["retrain", "exact"] and math.isnan(written.loc["retrain", "p_holm"])
