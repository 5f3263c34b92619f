"""Report of a long-stream study: curves of every metric over the requests and a drift summary per method.

Over hundreds of requests a mean over the stream hides what matters, whether a method settles or keeps
drifting, so the report shows each metric against the request index (mean ± std band over seeds) and
summarises it by its final value and its slope over the last half of the stream.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clutune.clu.diagnostics import drift_slope
from clutune.core.storage import write_local_atomic
from clutune.platform.reports.plots import no_values, sparse_line
from clutune.platform.reports.stats import is_paired, markdown, method_table, t_interval

STUDY_METRICS = (
    "kl_oracle_all",
    "acc_remain",
    "forgetting",
    "acc_learn",
    "dead_units",
    "weight_magnitude",
    "effective_rank",
)
TITLES = {
    "kl_oracle_all": "KL(oracle ‖ model), all splits",
    "acc_remain": "accuracy on remaining data",
    "forgetting": "forgetting",
    "acc_learn": "plasticity (acc_learn after learn requests)",
    "dead_units": "dead ReLU units (share)",
    "weight_magnitude": "mean |weight|",
    "effective_rank": "effective rank of the representation",
}
CURVES = "curves.png"  # a study folder's files, read back by the HTML report
STUDY_SUMMARY = "summary.md"
SUMMARY_METRICS = ("kl_oracle_all", "acc_remain", "dead_units", "weight_magnitude", "effective_rank")
FIG_INCHES = (18.0, 8.0)
DPI = 100
_COLUMNS = 4


def _band(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and std over seeds per request; a request no seed measured stays NaN (a gap in the curve)."""
    stats = rows.groupby("request")[metric].agg(["mean", "std"])
    stats["std"] = stats["std"].fillna(0.0)
    return stats


def _draw(ax, rows: pd.DataFrame, metric: str, colour: str, label: str, **style) -> bool:
    """One method's curve: every finite mean drawn (:func:`sparse_line`), ± std shaded; False if none is."""
    stats = _band(rows, metric)
    if not stats["mean"].notna().any():
        return False
    x = stats.index.to_numpy()
    sparse_line(ax, x, stats["mean"], label=label, color=colour, **style)
    ax.fill_between(x, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=colour, alpha=0.2, lw=0)
    return True


def plot_curves(rows: pd.DataFrame, path: Path) -> Figure:
    """One panel per study metric against the request, one line per method, written as a PNG to ``path``;
    returns the figure.

    Plain Agg figure, never pyplot: no global backend switch and no window, whatever process calls it.
    """
    metrics = [m for m in STUDY_METRICS if m in rows.columns]
    methods = sorted(rows["method"].unique())
    n_requests = rows["request"].nunique()
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    fig = Figure(figsize=FIG_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    n_rows = math.ceil((len(metrics) + 1) / _COLUMNS)  # one slot kept for the shared legend
    axes = fig.subplots(n_rows, _COLUMNS, squeeze=False).ravel()
    by_method = dict(list(rows.groupby("method")))
    for ax, metric in zip(axes, metrics, strict=False):
        drawn = False
        for method in methods:
            runs = by_method[method]
            if metric == "acc_learn":
                runs = runs[runs["kind"] == "learn"]
                if "oracle_acc_learn" in runs.columns:
                    # "_"-prefixed label: one legend entry for the oracle, added below, not one per method
                    _draw(ax, runs, "oracle_acc_learn", colours[method], "_oracle", linestyle="--")
            drawn = _draw(ax, runs, metric, colours[method], method) or drawn
        if not drawn:
            no_values(ax, f"no finite {metric} at any request of any run")
        ax.set_title(TITLES[metric])
        ax.set_xlabel("request")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    legend_ax = axes[len(metrics)]
    handles = [legend_ax.plot([], [], color=colours[m], label=m)[0] for m in methods]
    if "acc_learn" in metrics and "oracle_acc_learn" in rows.columns:
        handles.append(legend_ax.plot([], [], color="grey", linestyle="--", label="oracle (acc_learn panel)")[0])
    legend_ax.legend(handles=handles, loc="center", title="method (mean ± std over seeds)")
    for ax in axes[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(f"Long-stream study: {n_requests} requests, {len(methods)} methods, {_seed_counts(rows)}")
    write_local_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
    return fig


def summary_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (method, metric): the final value and the last-half drift slope, each as mean, std and 95%
    Student-t interval over seeds, with the number of seeds behind each (``final_n``, ``slope_n``) and the
    method's seed count (``seeds``).

    The final value is taken at the method's last request where the metric is finite (the oracle is not
    evaluated at every request); only the seeds finite there count, which ``final_n`` says. The slope is
    computed per seed over the full request range, so a request missing from a run counts as unmeasured
    rather than shifting the stream's halves. Std and interval bounds are NaN with one seed, never 0.
    """
    n_requests = int(rows["request"].max()) + 1
    records = []
    for method, runs in rows.groupby("method", sort=True):
        for metric in (m for m in SUMMARY_METRICS if m in rows.columns):
            finite = runs.dropna(subset=[metric])
            last = finite["request"].max()  # NaN when the metric is never finite
            final = finite.loc[finite["request"] == last, metric]
            slopes = pd.Series(
                [
                    drift_slope(run.set_index("request")[metric].reindex(range(n_requests)).tolist())
                    for _, run in runs.groupby("seed")
                ],
                dtype=float,
            )
            record = {"method": method, "metric": metric, "seeds": runs["seed"].nunique(), "final_request": last}
            for name, values in (("final", final), ("slope", slopes)):
                mean, lo, hi, n = t_interval(values.to_numpy())
                std = float(values.dropna().std()) if n > 1 else math.nan
                record.update({f"{name}_mean": mean, f"{name}_std": std, f"{name}_lo": lo, f"{name}_hi": hi})
                record[f"{name}_n"] = n
            records.append(record)
    return pd.DataFrame.from_records(records)


def _cell(mean: float, lo: float, hi: float, n: int, seeds: int, counted: bool = True) -> str:
    """``mean ± half-width of the 95% interval (n of N seeds)``; one seed gives the value alone, never ± 0.
    ``counted`` False (a study where every method ran one seed) leaves the count out: it would be the same
    "1 of 1" in every cell."""
    if math.isnan(mean):
        return "nan (0 seeds)"
    spread = f" ± {(hi - lo) / 2:.2g}" if math.isfinite(lo) else ""
    count = f" ({n} of {seeds} seed{'s' if seeds != 1 else ''})" if counted else ""
    return f"{mean:.4g}{spread}{count}"


def _seed_counts(rows: pd.DataFrame) -> str:
    counts = rows.groupby("method")["seed"].agg(lambda s: sorted(s.unique()))
    if counts.map(tuple).nunique() == 1:
        seeds = counts.iloc[0]
        return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} per method ({', '.join(str(s) for s in seeds)})"
    return "seeds per method: " + "; ".join(f"{m} {len(s)} ({', '.join(str(x) for x in s)})" for m, s in counts.items())


# the attacks' columns (evaluation.relearn, evaluation.relapse) only where the rows carry them
COMPARED = (
    "kl_oracle_all",
    "avg_gap",
    "acc_remain",
    "forgetting",
    "dead_units",
    "effective_rank",
    "relearn_gap",
    "relapse_acc",
)


STUDY_COMPARISON = "comparison.csv"  # the comparison in long form beside summary.md: Holm-adjusted p, comparator


def comparison_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The methods side by side: each run's mean over the stream, then mean, 95% interval and significance
    marks over seeds (:mod:`clutune.platform.reports.stats`, paired by seed when every method ran the same seeds)."""
    metrics = [m for m in COMPARED if m in rows.columns]
    per_run = rows.groupby(["method", "seed"])[metrics].mean().reset_index()
    return method_table(per_run, "method", metrics, is_paired(rows, "method"))


def comparison_markdown(rows: pd.DataFrame) -> str:
    """:func:`comparison_table` as summary.md shows it, naming the file that holds its p-values."""
    table = comparison_table(rows)
    return markdown(table, list(dict.fromkeys(m for m, _ in table.columns)), p_file=STUDY_COMPARISON)


DRIFT_HEADER = ("metric", "final value", "at request", "drift slope per request (last half)")


def drift_tables(rows: pd.DataFrame) -> tuple[str, dict[str, list[tuple[str, str, str, str]]]]:
    """The drift tables of a study, as summary.md and the HTML report both show them: the note on what a cell
    holds, then per method one (metric, final value, at request, drift slope) row of text per metric."""
    summary = summary_frame(rows)
    counted = bool((summary["seeds"] > 1).any())
    cells = (
        "Each cell: mean ± half-width of the 95% Student-t interval over the seeds behind it (n of the method's "
        "seeds: a final value counts the seeds scored at the method's last scored request)"
        if counted
        else "Each cell: the one seed's value (one run gives no interval)"
    )
    note = f"{cells}; drift slope = least-squares slope per request over the last half of the stream, per seed."
    tables = {}
    for method, table in summary.groupby("method", sort=True):
        tables[str(method)] = [
            (
                r.metric,
                _cell(r.final_mean, r.final_lo, r.final_hi, r.final_n, r.seeds, counted),
                "-" if math.isnan(r.final_request) else str(int(r.final_request)),
                _cell(r.slope_mean, r.slope_lo, r.slope_hi, r.slope_n, r.seeds, counted),
            )
            for r in table.itertuples()
        ]
    return note, tables


def summary_markdown(rows: pd.DataFrame) -> str:
    """The methods compared over the stream, then a Markdown table per method: final value and last-half
    drift slope of the headline and diagnostics, each with its interval and the seeds behind it."""
    n_requests = int(rows["request"].max()) + 1
    note, tables = drift_tables(rows)
    lines = [
        f"{n_requests} requests, {_seed_counts(rows)}.",
        "",
        "## Methods compared over the whole stream (each run's mean over its requests)",
        "",
        comparison_markdown(rows),
        "",
        "## Final values and drift per method",
        "",
        note,
    ]
    for method, cells in tables.items():
        lines += ["", f"### {method}", "", "| " + " | ".join(DRIFT_HEADER) + " |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(cell) + " |" for cell in cells]
    return "\n".join(lines) + "\n"
