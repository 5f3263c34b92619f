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
from clutune.platform.plots import no_values, sparse_line

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
    n_seeds = rows["seed"].nunique()
    fig.suptitle(f"Long-stream study: {n_requests} requests, {len(methods)} methods, {n_seeds} seeds")
    fig.savefig(path, format="png")
    return fig


def summary_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (method, metric): the final value and the last-half drift slope, each as mean and std over seeds.

    The final value is taken at the method's last request where the metric is finite (the oracle is not
    evaluated at every request). The slope is computed per seed over the full request range, so a request
    missing from a run counts as unmeasured rather than shifting the stream's halves. Std is the sample std
    (NaN with one seed).
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
            records.append(
                {
                    "method": method,
                    "metric": metric,
                    "final_request": last,
                    "final_mean": final.mean(),
                    "final_std": final.std(),
                    "slope_mean": slopes.mean(),
                    "slope_std": slopes.std(),
                }
            )
    return pd.DataFrame.from_records(records)


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "nan"
    if math.isnan(std) or std <= 1e-12 * abs(mean):  # one seed, or float rounding between equal seeds
        std = 0.0
    return f"{mean:.4g} ± {std:.2g}"


def summary_markdown(rows: pd.DataFrame) -> str:
    """A Markdown table per method: final value and last-half drift slope of the headline and diagnostics."""
    summary = summary_frame(rows)
    n_requests = int(rows["request"].max()) + 1
    seeds = sorted(rows["seed"].unique())
    lines = [
        f"{n_requests} requests, {len(seeds)} seeds ({', '.join(str(s) for s in seeds)}); "
        "mean ± std over seeds; drift slope = least-squares slope per request over the last half of the stream.",
    ]
    for method, table in summary.groupby("method", sort=True):
        lines += [
            "",
            f"### {method}",
            "",
            "| metric | final value | at request | drift slope per request (last half) |",
            "|---|---|---|---|",
        ]
        for r in table.itertuples():
            at = "-" if math.isnan(r.final_request) else str(int(r.final_request))
            lines.append(
                f"| {r.metric} | {_cell(r.final_mean, r.final_std)} | {at} | {_cell(r.slope_mean, r.slope_std)} |"
            )
    return "\n".join(lines) + "\n"
