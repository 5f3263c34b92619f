"""``clutune report``: one HTML page that needs nothing beside it and makes no request when opened.

Images are base64 data URIs, the style sheet is inline, and Optuna's interactive views share one inlined copy
of plotly.js. The table is computed like ``comparison.md`` (per run the mean over requests, then the mean with a
95% confidence interval over seeds, significance marks against the best); each cell also carries its unrounded
mean, std, interval, run count and mark as ``data-`` attributes, so a test (or a script) can read exact numbers
back from the page.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from clutune.core.storage import write_local_atomic
from clutune.errors import UserError
from clutune.platform.record.tracking import RECORD_DIR
from clutune.platform.reports.stats import caption, cell, is_paired, method_table
from clutune.platform.run.compare import TABLE_METRICS
from clutune.platform.search.convergence import report_html

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1300px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left;font-weight:600}img{max-width:100%;border:1px solid #ddd}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}details{margin:.5em 0}
"""


def table_groups(rows: pd.DataFrame) -> str:
    """Group by method (run, compare, study), or by trial for a sweep of one method."""
    if "trial_id" in rows and rows["method"].nunique() == 1 and rows["trial_id"].nunique() > 1:
        return "trial_id"
    return "method"


def summary(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per run: the mean over requests (NaN-skipping); per ``key``: mean, 95% t-interval over runs (seeds) and
    the marks of :func:`clutune.platform.reports.stats.method_table`, paired by seed when every group ran the same
    ones."""
    metrics = [m for m in TABLE_METRICS if m in rows]
    how = {m: "mean" for m in metrics} | ({"seed": "first"} if "seed" in rows else {})
    per_run = rows.groupby([key, "run_id"]).agg(how).reset_index()
    if "seed" not in per_run:
        per_run["seed"] = per_run["run_id"]
    return method_table(per_run, key, metrics, is_paired(rows, key))


def _table_html(table: pd.DataFrame, key: str) -> str:
    metrics = list(dict.fromkeys(m for m, _ in table.columns))
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    body = []
    for name, row in table.iterrows():
        most = max(int(row[(m, "n")]) for m in metrics)
        cells = []
        for m in metrics:
            data = " ".join(f'data-{s}="{float(row[(m, s)])!r}"' for s in ("mean", "std", "lo", "hi", "p_holm"))
            text = html.escape(cell(row, m, most))
            tied = bool(row[(m, "tied")])
            cells.append(
                f'<td data-metric="{m}" {data} data-n="{int(row[(m, "n")])}" data-tied="{str(tied).lower()}">'
                f"{f'<b>{text}</b>' if tied else text}</td>"
            )
        body.append(f'<tr data-group="{html.escape(str(name))}"><td>{html.escape(str(name))}</td>{"".join(cells)}</tr>')
    return f'<table id="comparison"><tr><th>{key}</th>{head}</tr>{"".join(body)}</table>'


def _complete_trials(rows: pd.DataFrame, folder: Path, key: str) -> tuple[pd.DataFrame, str]:
    """A sweep's comparison ranks complete trials only: a trial the scheduler stopped early (``PRUNED`` in
    ``trials.csv``) has a mean over the few requests it reached, which early requests flatter. Those trials are
    listed under the table with the requests they reached."""
    trials_csv = folder / "trials.csv" if folder.is_dir() else None
    if key != "trial_id" or trials_csv is None or not trials_csv.exists():
        return rows, ""
    trials = pd.read_csv(trials_csv, dtype={"trial_id": str})
    pruned = trials[trials["status"] == "PRUNED"]
    if pruned.empty:
        return rows, ""
    total = int(trials["requests_done"].max())
    items = "".join(
        f'<li data-state="pruned">{html.escape(str(r.trial_id))}: pruned after {int(r.requests_done)} of {total} '
        "requests</li>"
        for r in pruned.itertuples()
    )
    kept = rows[~rows["trial_id"].astype(str).isin(set(pruned["trial_id"]))]
    head = f"<p>{len(pruned)} trial(s) stopped early by the scheduler, left out of the table (state PRUNED):</p>"
    return (kept if len(kept) else rows), f'{head}<ul id="pruned">{items}</ul>'


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}"></figure>'


def _plots_html(folder: Path) -> str:
    parts = [_img(p) for p in sorted(folder.glob("*.png"))]
    for run in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = "".join(_img(p) for p in sorted(run.glob("*.png")))
        parts.append(f"<details><summary>run {html.escape(run.name)}</summary>{images}</details>")
    return "\n".join(parts)


def _optuna_html(sweep_dir: Path, config: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    from clutune.platform.record.publish import study_storage
    from clutune.platform.reports.plots import optuna_figures

    storage = study_storage(sweep_dir, (config.get("sweep") or {}).get("study_storage"))
    figures = optuna_figures(storage, sweep_dir.name)
    if not figures:
        return ""
    divs = "".join(
        f"<h3>{html.escape(n)}</h3>" + f.to_html(full_html=False, include_plotlyjs=False) for n, f in figures.items()
    )
    return f"<h2>Optuna study</h2><script>{get_plotlyjs()}</script>{divs}"


def _source(source: str, tracking_uri: str | None, scratch: Path) -> tuple[pd.DataFrame, Path, dict[str, Any], str]:
    """(rows, plots folder, config, what) for a results folder, a sweep folder or an MLflow experiment."""
    folder = Path(source)
    if folder.is_dir():
        if not (folder / "results.parquet").exists():
            raise UserError(f"{folder} holds no results.parquet: not a results or sweep folder")
        rows = pd.read_parquet(folder / "results.parquet")
        record = folder / RECORD_DIR / "record.json"
        config = json.loads(record.read_text()).get("config", {}) if record.exists() else {}
        plots = folder / "plots"
        if not plots.exists() or not any(plots.glob("**/*.png")):
            plots = _draw(rows, scratch)
        return rows, plots, config, f"folder {folder.resolve()}"
    if _names_a_path(source):
        raise UserError(f"{source}: is not a folder (a report's source is a results or sweep folder, or an experiment)")
    from clutune.platform.record.export import experiment_rows

    rows = experiment_rows(source, tracking_uri)
    if rows.empty:
        raise UserError(f"MLflow experiment {source!r} has no runs with per-request metrics")
    params = [c for c in rows.columns if c.startswith("params.")]
    config = {c[len("params.") :]: rows[c].iloc[0] for c in params if rows[c].nunique() == 1}
    rows = rows.rename(columns={"run_id": "mlflow_run_id"}).assign(run_id=lambda f: f["mlflow_run_id"])
    return rows, _draw(rows, scratch), config, f"MLflow experiment {source!r}"


def _names_a_path(source: str) -> bool:
    """A source written as a path (``/x``, ``./x``, ``~/x``, ``runs/x``) is a folder the user meant, never an
    MLflow experiment name to look up (which would open, and create, a store first)."""
    return source.startswith((".", "~")) or "/" in source or os.sep in source or Path(source).exists()


def _draw(rows: pd.DataFrame, scratch: Path) -> Path:
    from clutune.platform.reports.plots import method_plots, run_plots

    for run_id, frame in rows.groupby("run_id"):
        run_plots(frame, scratch / str(run_id), f"{frame['method'].iloc[0]} ({run_id})")
    if rows["method"].nunique() > 1 or rows["run_id"].nunique() > 1:
        method_plots(rows, scratch, "runs")
    return scratch


def write_report(source: str, out: Path, tracking_uri: str | None = None) -> Path:
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out}: expected an .html file name")
    if not out.parent.exists():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    with tempfile.TemporaryDirectory() as scratch:
        rows, plots, config, what = _source(source, tracking_uri, Path(scratch))
        key = table_groups(rows)
        folder = Path(source)
        rows, stopped = _complete_trials(rows, folder, key)
        rdb = (config.get("sweep") or {}).get("study_storage") and (folder / "trials.csv").exists()
        is_sweep = folder.is_dir() and ((folder / "optuna-journal.log").exists() or rdb)
        optuna = _optuna_html(folder, config) if is_sweep else ""
        converged = report_html(folder, config) if folder.is_dir() else ""  # a sweep's convergence.csv
        table = summary(rows, key)
        runs, stamp = rows["run_id"].nunique(), time.strftime("%Y-%m-%d %H:%M")
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>clutune report: {html.escape(what)}</title>
<style>{_STYLE}</style></head><body>
<h1>clutune report</h1><p>{html.escape(what)}; {runs} runs, {len(rows)} rows; written {stamp}.</p>
<h2>Comparison</h2><p>Per run the mean over its requests, then over the runs (seeds) of each {key}.
{html.escape(caption(table, "runs (seeds)")).replace("**Bold**", "<b>Bold</b>")}</p>
{_table_html(table, key)}
{stopped}
{converged}
<h2>Plots</h2>{_plots_html(plots)}
{optuna}
<h2>Config</h2><pre>{html.escape(json.dumps(config, indent=1, default=str), quote=False)}</pre>
</body></html>"""
    write_local_atomic(out, lambda tmp: tmp.write_text(page))
    return out


__all__ = ["summary", "table_groups", "write_report"]
