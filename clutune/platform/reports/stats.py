"""Intervals and significance for every table that compares methods (compare, study, report, aggregate).

With three seeds, 0.534 ± 0.005 against 0.545 ± 0.007 does not say whether two methods differ, so each cell is
a mean over runs (seeds) with its 95% Student-t confidence interval, and each column marks the methods that are
not significantly different from the best approximate one (the column's comparator). An exact method (an exact
retrain: the oracle's own recipe) would be "best" in every KL column and the marks would then never compare the
approximate methods with each other, so exact methods are shown as the floor and left out of the ranking. The
test is Welch's t-test (unequal variances) of each approximate method against the comparator, with a Holm
correction across those comparisons at alpha 0.05. When every method ran the same
seeds against the same oracles (a ``compare`` or ``study`` grid), the runs are paired by seed and the paired
t-test replaces Welch's; the caption says which test a table used.

A column is only ranked where "best" has a direction (KL, gaps, forgetting and cost: lower; accuracy on the
remaining and test data: higher). Accuracy on the forgotten samples and the MIA rates are good when they match
the oracle's, which the gap columns measure, so those columns carry intervals but no marks.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from clutune.clu.methods import exact_methods

ALPHA = 0.05
CONFIDENCE = 0.95
LOWER = ("kl_oracle", "avg_gap", "gap_", "forgetting", "seconds", "samples_processed")
HIGHER = ("acc_remain", "acc_test", "acc_learn")
STATS = ("mean", "std", "n", "lo", "hi", "comparator", "p_holm", "tied")


def direction(metric: str) -> str | None:
    """ "min" or "max" where a best value exists for ``metric``; None where closeness to the oracle is the aim."""
    if metric.startswith(LOWER):
        return "min"
    if metric.startswith(HIGHER):
        return "max"
    return None


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite ``values``: mean ± t(1 - alpha/2, n - 1) · s / sqrt(n). The bounds
    are NaN with fewer than two values (no spread to estimate), never a zero-width interval."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is left out of the count): the i-th smallest of m
    is multiplied by m - i, made monotone and capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def is_paired(rows: pd.DataFrame, group: str) -> bool:
    """Paired runs: every ``group`` value ran seeds of one common set (once each, at least two) and, where rows
    name their oracle, every run scored each request against the same oracle. A group may lack some of the
    seeds (a run left out after it diverged): each test then pairs the seeds both groups ran."""
    if "seed" not in rows or rows[group].nunique() < 2:
        return False
    per_group = rows.groupby(group)["seed"].agg(lambda s: frozenset(s))
    common = frozenset().union(*per_group)
    if any(len(seeds) < 2 for seeds in per_group) or not any(seeds == common for seeds in per_group):
        return False
    runs = rows.groupby([group, "seed"])["run_id"].nunique() if "run_id" in rows else None
    if runs is not None and (runs > 1).any():
        return False
    if "oracle_key" in rows:
        keys = rows[rows["oracle_key"].astype(str) != ""].groupby("request")["oracle_key"].nunique()
        if (keys > 1).any():
            return False
    return True


def _pvalue(best: pd.Series, other: pd.Series, paired: bool) -> float:
    """Two-sided p of ``other`` against ``best`` (values indexed by seed when paired); NaN when untestable.
    Identical samples (no spread at all) are tied (p = 1), distinct constant samples differ (p = 0)."""
    if paired:
        both = pd.concat([best, other], axis=1, join="inner").dropna()
        a, b = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
        if len(a) < 2:
            return math.nan
        d = a - b
        if _constant(d, np.abs(np.r_[a, b]).max()):  # the same shift on every seed: t is undefined
            return 1.0 if _constant(np.r_[d, 0.0], np.abs(np.r_[a, b]).max()) else 0.0
        return float(stats.ttest_rel(a, b).pvalue)
    a, b = best.dropna().to_numpy(), other.dropna().to_numpy()
    if len(a) < 2 or len(b) < 2:
        return math.nan
    scale = np.abs(np.r_[a, b]).max()
    if _constant(a, scale) and _constant(b, scale):
        return 1.0 if _constant(np.r_[a, b], scale) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _constant(x: np.ndarray, scale: float) -> bool:
    """No spread beyond float rounding (relative to ``scale``): a t statistic would divide by rounding noise."""
    return float(np.ptp(x)) <= 1e-9 * max(float(scale), 1e-300)


def method_table(
    per_run: pd.DataFrame, group: str, metrics: Sequence[str], paired: bool, floors: Collection[str] | None = None
) -> pd.DataFrame:
    """One row per ``group`` value, columns (metric, stat) for ``STATS``, from one value per run.

    ``per_run`` holds a row per run with ``group``, ``seed`` (used to pair runs) and the metrics. ``floors`` are
    the groups shown but never ranked (None: the exact methods among the groups when grouping by method). The
    ``comparator`` of a column is its best group outside the floors; ``tied`` is True for it and for every other
    non-floor group whose Holm-adjusted p against it is at least ``ALPHA``; False for the others, for the
    floors, and for every group where the column has no direction or a group has fewer than two runs to test.
    Rows are ordered by the mean of ``kl_oracle_all`` where present; ``attrs["floors"]`` lists the floors.
    """
    groups = sorted(per_run[group].unique(), key=str)
    if floors is None:
        floors = exact_methods(groups) if group == "method" else set()
    floor_set = {str(f) for f in floors}
    columns = {}
    for metric in metrics:
        values = {g: per_run.loc[per_run[group] == g].set_index("seed")[metric] for g in groups}
        cells = {g: t_interval(v.to_numpy()) for g, v in values.items()}
        std = {g: float(v.dropna().std(ddof=1)) if v.notna().sum() > 1 else math.nan for g, v in values.items()}
        p_holm = dict.fromkeys(groups, math.nan)
        tied = dict.fromkeys(groups, False)
        comparator = dict.fromkeys(groups, "")
        sense = direction(metric)
        means = pd.Series({g: c[0] for g, c in cells.items()}).dropna()
        means = means[[str(g) not in floor_set for g in means.index]]
        if sense is not None and len(means) > 1:
            best = means.idxmin() if sense == "min" else means.idxmax()
            others = [g for g in means.index if g != best]
            raw = [_pvalue(values[best], values[g], paired) for g in others]
            adjusted = holm(raw)
            if all(math.isfinite(p) for p in adjusted):
                comparator = dict.fromkeys(groups, str(best))
                tied[best] = True
                for g, p in zip(others, adjusted, strict=True):
                    p_holm[g] = p
                    tied[g] = p >= ALPHA
        for stat, per_group in (
            ("mean", {g: c[0] for g, c in cells.items()}),
            ("std", std),
            ("n", {g: c[3] for g, c in cells.items()}),
            ("lo", {g: c[1] for g, c in cells.items()}),
            ("hi", {g: c[2] for g, c in cells.items()}),
            ("comparator", comparator),
            ("p_holm", p_holm),
            ("tied", tied),
        ):
            columns[(metric, stat)] = pd.Series(per_group)
    table = pd.DataFrame(columns)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = group
    table.attrs["paired"] = paired
    table.attrs["floors"] = sorted(str(g) for g in groups if str(g) in floor_set)
    if "kl_oracle_all" in metrics:
        table = table.loc[table[("kl_oracle_all", "mean")].sort_values(na_position="last").index]
    return table


LONG_COLUMNS = ("mean", "lo", "hi", "n", "comparator", "p_holm", "tied")


def long_form(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`method_table` as one row per (group, metric) with columns ``mean``, ``lo``, ``hi``, ``n``,
    ``comparator`` (the column's best approximate group, "" where the column is not ranked), ``p_holm``
    (Holm-adjusted, against the comparator), ``tied`` and ``exact`` (a floor, never ranked): what a notebook
    filters, sorts and plots without unstacking a two-level header, and what comparison.csv holds. Rows keep
    the table's order (groups by ``kl_oracle_all``, then metrics)."""
    group = table.index.name or "method"
    metrics = list(dict.fromkeys(m for m, _ in table.columns))
    floors = set(table.attrs.get("floors", ()))
    records = [
        {
            group: name,
            "metric": metric,
            **{stat: row[(metric, stat)] for stat in LONG_COLUMNS},
            "exact": str(name) in floors,
        }
        for name, row in table.iterrows()
        for metric in metrics
    ]
    frame = pd.DataFrame.from_records(records, columns=[group, "metric", *LONG_COLUMNS, "exact"])
    kinds = {"mean": float, "lo": float, "hi": float, "n": int, "comparator": str, "p_holm": float, "tied": bool}
    return frame.astype({**kinds, "exact": bool})


def caption(table: pd.DataFrame, runs: str = "seeds", p_file: str | None = None) -> str:
    """What a table's cells and marks mean, the test named (paired or Welch) and why, in Markdown; ``p_file``
    names the file beside the table that holds the Holm-adjusted p-values (its ``p_holm`` column)."""
    where = f" The Holm-adjusted p of each method against its column's comparator: {p_file} (p_holm)." if p_file else ""
    return f"{cells_note(runs)} **Bold**: {bold_note(table)}{where}"


def cells_note(runs: str = "seeds") -> str:
    """What a cell holds: the first half of :func:`caption`, kept apart so HTML can set the bold mark itself."""
    return (
        f"Each cell: mean ± half-width of the 95% Student-t confidence interval over {runs} (n = number of runs "
        "behind a cell when it differs from the row's; one run gives no interval)."
    )


def bold_note(table: pd.DataFrame) -> str:
    """What the bold mark means, the test named (paired or Welch) and why: the second half of :func:`caption`."""
    if table.attrs.get("paired"):
        test = "paired t-test (every method ran the same seeds against the same oracles, so runs are paired by seed)"
    else:
        test = "Welch's t-test (unequal variances)"
    return (
        f"the best approximate method of the column (its comparator: {comparators(table)}) and every approximate "
        f"method not significantly different from it: {test} against the comparator, Holm correction across "
        f"methods, alpha = {ALPHA}. {floor_note(table)}Lower is "
        "best for KL, gaps, forgetting, seconds and samples; higher for acc_remain, acc_test and acc_learn; the "
        "other columns (accuracy on forgotten samples, MIA rates) are compared with the oracle through the gaps "
        "and are not ranked."
    )


def comparators(table: pd.DataFrame) -> str:
    """Each comparator with the columns it is best in, e.g. "ugclu for kl_oracle_all, avg_gap; er for acc_test"."""
    by_best: dict[str, list[str]] = {}
    for (metric, stat), column in table.items():
        if stat == "comparator" and column.iloc[0]:
            by_best.setdefault(str(column.iloc[0]), []).append(metric)
    return "; ".join(f"{best} for {', '.join(cols)}" for best, cols in by_best.items()) or "none"


def floor_note(table: pd.DataFrame) -> str:
    """The sentence that says which rows are exact floors, or nothing where none are."""
    floors = table.attrs.get("floors", [])
    if not floors:
        return ""
    names = ", ".join(floors)
    return (
        f"Exact methods ({names}: rows marked exact) are the floor: shown for reference, never the comparator "
        "and never marked, even where their value is the best. "
    )


def single_run(table: pd.DataFrame) -> bool:
    """Every cell of a :func:`method_table` rests on one run at most (one seed throughout)."""
    counts = [int(v) for (_, stat), column in table.items() if stat == "n" for v in column]
    return max(counts, default=0) <= 1


def cell(row: pd.Series, metric: str, runs: int, single: bool = False) -> str:
    """``mean ± half`` (4 and 2 significant digits), ``(n=k)`` when fewer runs than the row's ``runs`` back it,
    or one run where others have more. In a table of one run throughout (``single``) every cell is plain: the
    same ``(n=1)`` everywhere would say nothing the missing intervals do not."""
    mean, lo, hi, n = row[(metric, "mean")], row[(metric, "lo")], row[(metric, "hi")], int(row[(metric, "n")])
    if not math.isfinite(mean):
        return "nan"
    text = f"{mean:.4g} ± {(hi - lo) / 2:.2g}" if math.isfinite(lo) else f"{mean:.4g}"
    if n != runs or (n < 2 and not single):
        text += f" (n={n})"
    return text


def markdown(
    table: pd.DataFrame,
    metrics: Sequence[str],
    label: str = "method",
    runs: str = "seeds",
    p_file: str | None = None,
) -> str:
    """The table as Markdown, the caption first (naming ``p_file``, the long form beside it, where there is one);
    marked cells in bold, exact floors labelled."""
    lines = [caption(table, runs, p_file), "", f"| {label} | " + " | ".join(metrics) + " |"]
    lines.append("|" + "---|" * (len(metrics) + 1))
    single = single_run(table)
    for name, row in table.iterrows():
        most = max(int(row[(m, "n")]) for m in metrics)
        cells = []
        for m in metrics:
            text = cell(row, m, most, single)
            cells.append(f"**{text}**" if row[(m, "tied")] else text)
        shown = f"{name} (exact)" if str(name) in table.attrs.get("floors", ()) else name
        lines.append(f"| {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "bold_note",
    "caption",
    "cell",
    "cells_note",
    "comparators",
    "direction",
    "floor_note",
    "holm",
    "is_paired",
    "long_form",
    "markdown",
    "method_table",
    "single_run",
    "t_interval",
]
