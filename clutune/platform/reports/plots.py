"""The figures people read, drawn from results.parquet rows only (so any finished folder can be redrawn).

Per run: the accuracy matrix (test accuracy per task after each request, model beside oracle), KL to the oracle
per split, both MIA values per unlearn request, and the accuracy gaps to the oracle. Per comparison: the same
curves with one line per method, mean ± std band over seeds. Rows with relapse (``evaluation.relapse``) add the
relapse curves of every unlearned set. Every figure is a fixed-size PNG (``PLOT_PX``)
drawn with Agg; past ``ANNOTATE_MAX`` requests the heatmap drops its numbers and dense curves their markers, so
a stream of hundreds of requests stays readable.

Oracle metrics are sparse under an ``every_k`` or ``final`` policy (NaN at unscored requests), and a plain line
joins only two consecutive finite points: such a series would draw nothing. So every curve goes through
:func:`sparse_line`: a line between finite neighbours, and a marker on every finite point of a sparse series
(and on any point no segment reaches), however long the stream. A panel with no finite value says so in its own text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clutune.core.storage import write_local_atomic, write_local_text
from clutune.platform.reports.relapse_report import relapse_frame

PLOT_PX = (1200, 600)
DPI = 100
MARGINS = {"left": 0.08, "right": 0.98, "bottom": 0.11, "top": 0.91}  # fit the labels at PLOT_PX
ANNOTATE_MAX = 30
SPLITS = ("all", "remain", "learn", "unlearn", "test")
GAPS = ("gap_remain", "gap_learn", "gap_unlearn", "gap_test", "avg_gap")
MIA = ("mia_member_rate", "mia_efficacy")
RUN_PLOTS = ("accuracy_matrix.png", "kl_oracle.png", "mia.png", "gaps.png")
METHOD_PLOTS = ("methods_kl_oracle.png", "methods_gaps.png", "methods_mia.png", "methods_accuracy.png")


def _figure(ncols: int = 1) -> tuple[Any, Any]:
    """A bare Figure, not pyplot's: no global figure registry to go through (or to close), and safe to draw on
    the engine's record thread while the main thread draws others."""
    fig = Figure(figsize=(PLOT_PX[0] / DPI, PLOT_PX[1] / DPI), dpi=DPI)
    fig.subplots_adjust(**(MARGINS if ncols == 1 else {**MARGINS, "top": 0.85, "wspace": 0.4}))  # + a suptitle
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def save_figure(fig: Any, path: Path) -> Path:
    """Fixed margins (``MARGINS``) instead of tight_layout, which measures every text on the figure once more
    and was a third of a figure's CPU; PNG compression at its fastest level, another tenth. A sweep draws
    these for every trial on the driver, next to the trials."""
    options = {"format": "png", "dpi": DPI, "pil_kwargs": {"compress_level": 1}}
    write_local_atomic(_mkdir(path), lambda tmp: fig.savefig(tmp, **options))
    return path


def task_columns(rows: pd.DataFrame) -> list[int]:
    return sorted(int(m[1]) for c in rows.columns if (m := re.fullmatch(r"acc_task_(\d+)", c)))


def _request_labels(frame: pd.DataFrame) -> list[str]:
    return [f"{int(r)}{'U' if k == 'unlearn' else 'L'}" for r, k in zip(frame["request"], frame["kind"], strict=True)]


def accuracy_matrix(run: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Rows tasks, columns requests; None for rows written before the per-task columns existed."""
    tasks = task_columns(run)
    if not tasks:
        return None
    run = run.sort_values("request")
    fig, axes = _figure(2)
    n = len(run)
    image = None
    for ax, prefix, who in zip(axes, ("acc_task_", "oracle_acc_task_"), ("model", "oracle"), strict=True):
        matrix = np.array([run[f"{prefix}{t}"].to_numpy(dtype=float) for t in tasks])
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest")
        if n <= ANNOTATE_MAX and len(tasks) <= ANNOTATE_MAX:
            for (i, j), v in np.ndenumerate(matrix):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
            ax.set_xticks(range(n), _request_labels(run), fontsize=7)
        ax.set_yticks(range(len(tasks)), [f"task {t}" for t in tasks], fontsize=7)
        ax.set_xlabel("after request (L learn, U unlearn)")
        ax.set_ylabel("task")
        ax.set_title(f"{who}: test accuracy per task")
    fig.colorbar(image, ax=list(axes), label="test accuracy")
    fig.suptitle(title)
    return save_figure(fig, path)


def _mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def sparse_line(ax: Any, x: Any, y: Any, label: str | None = None, **style: Any) -> Any:
    """Draw ``y`` against ``x`` (sorted by x) so that every finite point is visible; returns the line.

    The line joins finite neighbours only (a NaN breaks it, so no value is invented between two scored
    requests). Markers go where a line alone would hide a point: on every finite point of a sparse series
    (most points NaN, as under an ``every_k`` oracle policy), on the isolated finite points of a series with a
    few gaps, and on every point of a short series (``ANNOTATE_MAX``).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.isfinite(y)
    before = np.r_[False, finite[:-1]]
    after = np.r_[finite[1:], False]
    if len(y) <= ANNOTATE_MAX or finite.sum() <= len(y) / 2:
        marked = finite
    else:
        marked = finite & ~before & ~after  # no segment reaches these points
    style = {"lw": 1.2, **style}
    (line,) = ax.plot(x, y, label=label, **style)
    if marked.any():
        size = 5 if len(y) <= ANNOTATE_MAX else 3
        ax.plot(x[marked], y[marked], linestyle="none", marker="o", markersize=size, color=line.get_color())
    return line


def no_values(ax: Any, what: str) -> None:
    """The text of a panel that has nothing to draw, saying why, in the panel itself."""
    ax.text(0.5, 0.5, what, ha="center", va="center", fontsize=8, wrap=True, transform=ax.transAxes)


def _curves(ax: Any, run: pd.DataFrame, columns: list[tuple[str, str]], log: bool = False) -> None:
    drawn = False
    for column, label in columns:
        if column in run and run[column].notna().any():
            sparse_line(ax, run["request"], run[column], label=label)
            drawn = True
    if log and drawn and (run[[c for c, _ in columns if c in run]] > 0).any().any():
        ax.set_yscale("log")
    if drawn:
        ax.legend(fontsize=8)
    else:
        no_values(ax, "no finite value at any request (no oracle scored, or no unlearn request)")
    ax.set_xlabel("request")


def run_plots(run: pd.DataFrame, folder: Path, title: str) -> list[Path]:
    """The four per-run figures of one run's rows, written into ``folder``."""
    run = run.sort_values("request")
    out = []
    matrix = accuracy_matrix(run, folder / "accuracy_matrix.png", f"{title}: accuracy matrix")
    if matrix is not None:
        out.append(matrix)
    return out + [save_figure(fig, folder / name) for name, fig in run_figures(run, title).items()]


def run_figures(run: pd.DataFrame, title: str) -> dict[str, Any]:
    """The curve figures of one run (KL to the oracle, MIA, gaps) by file name, unsaved."""
    run = run.sort_values("request")
    figures = {}
    fig, (ax,) = _figure()
    _curves(ax, run, [(f"kl_oracle_{s}", s) for s in SPLITS], log=True)
    ax.set_ylabel("KL(oracle ‖ model), mean per sample")
    ax.set_title(f"{title}: KL divergence to the oracle per split")
    figures["kl_oracle.png"] = fig

    fig, (ax,) = _figure()
    unlearn = run[run["kind"] == "unlearn"]
    pairs = [(m, f"model {m}") for m in MIA] + [(f"oracle_{m}", f"oracle {m}") for m in MIA]
    if len(unlearn):
        width = 0.2
        x = np.arange(len(unlearn))
        for i, (column, label) in enumerate(pairs):
            values = unlearn[column].to_numpy(dtype=float) if column in unlearn else np.full(len(unlearn), np.nan)
            ax.bar(x + (i - 1.5) * width, values, width, label=label)  # NaN (no oracle there): no bar, not 0
        ax.set_xticks(x, [f"request {int(r)}" for r in unlearn["request"]], fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
    else:
        no_values(ax, "no unlearn request")
    ax.set_xlabel("unlearn request")
    ax.set_ylabel("rate")
    ax.set_title(f"{title}: membership inference on the forgotten samples, model vs oracle")
    figures["mia.png"] = fig

    fig, (ax,) = _figure()
    _curves(ax, run, [(g, g) for g in GAPS])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("|accuracy − oracle accuracy|")
    ax.set_title(f"{title}: accuracy gaps to the oracle")
    figures["gaps.png"] = fig
    relapse = relapse_frame(run)
    if not relapse.empty:
        figures["relapse.png"] = relapse_figure(relapse, title)
    return figures


def relapse_plot(rows: pd.DataFrame, path: Path, title: str) -> Path | None:
    """The relapse curves of ``rows`` saved at ``path``; None (and no file) where the rows carry no relapse."""
    relapse = relapse_frame(rows)
    return None if relapse.empty else save_figure(relapse_figure(relapse, title), path)


def relapse_figure(relapse: pd.DataFrame, title: str) -> Figure:
    """Relapse curves (:mod:`clutune.platform.reports.relapse_report`): one panel per method, one line per
    unlearned set, its accuracy minus the oracle's from its unlearn request on (mean over seeds). A line that
    climbs after its start is a set coming back."""
    methods = sorted(relapse["method"].unique())
    fig, axes = _figure(len(methods))
    for ax, method in zip(axes, methods, strict=True):
        frame = relapse[relapse["method"] == method]
        drawn = False
        for (at, label), curve in frame.groupby(["unlearned_at", "set"], sort=True):
            mean = curve.groupby("request")["acc_over_oracle"].mean()
            if mean.notna().any():
                sparse_line(ax, mean.index, mean, label=f"{label} (request {int(at)})")
                drawn = True
        if drawn:
            ax.axhline(0, color="grey", lw=0.5)
            ax.legend(fontsize=7)
        else:
            no_values(ax, "no oracle scored after an unlearn request")
        ax.set_title(str(method), fontsize=9)
        ax.set_xlabel("request")
    axes[0].set_ylabel("accuracy on the unlearned set − oracle's")
    seeds = relapse.groupby("method")["seed"].nunique().max()
    fig.suptitle(f"{title}: relapse of each unlearned set (mean over {seeds} seed(s))")
    return fig


def _band(ax: Any, rows: pd.DataFrame, column: str, group: str = "method") -> bool:
    """One line per ``group`` value: mean over seeds per request, ± std shaded; every finite mean drawn."""
    if column not in rows or not rows[column].notna().any():
        return False
    for name, frame in rows.groupby(group, sort=True):
        stats = frame.groupby("request")[column].agg(["mean", "std"]).fillna({"std": 0.0})
        line = sparse_line(ax, stats.index, stats["mean"], label=str(name))
        ax.fill_between(
            stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2, color=line.get_color()
        )
    return True


def method_plots(rows: pd.DataFrame, folder: Path, title: str) -> list[Path]:
    """Curves of a comparison or study: one line per method, mean ± std band over seeds, written into ``folder``."""
    return [save_figure(fig, folder / name) for name, fig in method_figures(rows, title).items()]


def method_figures(rows: pd.DataFrame, title: str) -> dict[str, Any]:
    """The figures of :func:`method_plots` by file name, unsaved."""
    seeds = rows.groupby("method")["seed"].nunique().max() if "seed" in rows else 1
    panels = {
        "methods_kl_oracle.png": ("KL to the oracle", [f"kl_oracle_{s}" for s in ("all", "remain", "unlearn", "test")]),
        "methods_gaps.png": ("accuracy gap to the oracle", ["avg_gap", "gap_remain", "gap_unlearn", "gap_test"]),
        "methods_mia.png": ("MIA", ["mia_member_rate", "mia_efficacy", "oracle_mia_member_rate", "forgetting"]),
        "methods_accuracy.png": ("accuracy", ["acc_test", "acc_remain", "acc_unlearn", "oracle_acc_test"]),
    }
    figures = {}
    for name, (what, columns) in panels.items():
        fig, axes = _figure(len(columns))
        for ax, column in zip(axes, columns, strict=True):
            if _band(ax, rows, column):
                ax.legend(fontsize=7)
                if column.startswith("kl_") and (rows[column] > 0).any():
                    ax.set_yscale("log")
            else:
                no_values(ax, f"no finite {column} in any run")
            ax.set_title(column, fontsize=9)  # the panel's only label: a y label too would crowd four panels
            ax.set_xlabel("request")
        fig.suptitle(f"{title}: {what} per request, one line per method (mean ± std over {seeds} seed(s))")
        figures[name] = fig
    relapse = relapse_frame(rows)
    if not relapse.empty:
        figures["methods_relapse.png"] = relapse_figure(relapse, title)
    return figures


def optuna_figures(storage: Any, study_name: str) -> dict[str, Any]:
    """Optuna's own views of a sweep (plotly figures): history, importances, parallel coordinates and, with
    several objectives, the Pareto front. A view Optuna cannot draw yet (too few complete trials) is left out."""
    import optuna
    from optuna import visualization as vis

    study = optuna.load_study(study_name=study_name, storage=storage)
    names = getattr(study, "metric_names", None) or [f"objective {i}" for i in range(len(study.directions))]
    multi = len(study.directions) > 1
    first = {"target": (lambda t: t.values[0]), "target_name": names[0]} if multi else {}
    views = {
        "optuna_history": lambda: vis.plot_optimization_history(study, **first),
        "optuna_importances": lambda: vis.plot_param_importances(study, **first),
        "optuna_parallel_coordinate": lambda: vis.plot_parallel_coordinate(study, **first),
    }
    if multi:
        views["optuna_pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=names[:3])
    figures = {}
    for name, draw in views.items():
        try:
            figures[name] = draw()
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
    return figures


def optuna_html(storage: Any, study_name: str, folder: Path) -> list[Path]:
    """Each view as a self-contained HTML file (plotly.js inlined), readable offline."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, figure in optuna_figures(storage, study_name).items():
        html = figure.to_html(include_plotlyjs=True, full_html=True)
        write_local_text(folder / f"{name}.html", html)
        out.append(folder / f"{name}.html")
    return out


__all__ = [
    "PLOT_PX",
    "RUN_PLOTS",
    "METHOD_PLOTS",
    "accuracy_matrix",
    "method_figures",
    "method_plots",
    "optuna_figures",
    "optuna_html",
    "relapse_figure",
    "relapse_plot",
    "run_figures",
    "run_plots",
    "save_figure",
    "sparse_line",
]
