"""``clutune report``: one HTML page that needs nothing beside it and makes no request when opened.

The page is the template ``templates/report.html`` rendered with autoescaping: method, run, experiment and
config names are text wherever they appear, whatever characters they hold.

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

import jinja2
import pandas as pd
from markupsafe import Markup

from clutune.core.storage import write_local_atomic
from clutune.errors import UserError
from clutune.platform.record.tracking import RECORD_DIR
from clutune.platform.reports.stats import bold_note, cell, cells_note, is_paired, method_table, single_run
from clutune.platform.reports.study_report import DRIFT_HEADER, STUDY_SUMMARY, drift_tables
from clutune.platform.run.compare import TABLE_METRICS
from clutune.platform.search.convergence import report_section

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("clutune.platform.reports", "templates"),
    autoescape=True,  # every name and value on the page is text: a method called <script> stays text
    undefined=jinja2.StrictUndefined,
)
# Element content needs only &, < and > escaped: the config's JSON then reads (and copies) as JSON.
_TEMPLATES.filters["text"] = lambda value: Markup(html.escape(str(value), quote=False))


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


def table_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The comparison table as the template reads it: per group its cells, each with its text, its mark and its
    unrounded mean, std, interval, Holm p-value and run count (written as ``data-`` attributes)."""
    metrics = list(dict.fromkeys(m for m, _ in table.columns))
    single = single_run(table)
    rows = []
    for name, row in table.iterrows():
        most = max(int(row[(m, "n")]) for m in metrics)
        cells = [
            {
                "metric": m,
                **{s: repr(float(row[(m, s)])) for s in ("mean", "std", "lo", "hi", "p_holm")},
                "n": int(row[(m, "n")]),
                "tied": bool(row[(m, "tied")]),
                "text": cell(row, m, most, single),
            }
            for m in metrics
        ]
        rows.append({"group": str(name), "cells": cells})
    return rows


def _complete_trials(rows: pd.DataFrame, folder: Path, key: str) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """A sweep's comparison ranks complete trials only: a trial the scheduler stopped early (``PRUNED`` in
    ``trials.csv``) has a mean over the few requests it reached, which early requests flatter. Those trials are
    listed under the table with the requests they reached."""
    trials_csv = folder / "trials.csv" if folder.is_dir() else None
    if key != "trial_id" or trials_csv is None or not trials_csv.exists():
        return rows, None
    trials = pd.read_csv(trials_csv, dtype={"trial_id": str})
    pruned = trials[trials["status"] == "PRUNED"]
    if pruned.empty:
        return rows, None
    kept = rows[~rows["trial_id"].astype(str).isin(set(pruned["trial_id"]))]
    listed = [{"trial_id": str(r.trial_id), "reached": int(r.requests_done)} for r in pruned.itertuples()]
    return (kept if len(kept) else rows), {"total": int(trials["requests_done"].max()), "trials": listed}


def image(path: Path, root: Path) -> dict[str, str]:
    """A PNG as the page inlines it: its path under ``root`` (the source folder: the alt text, so every figure
    can be found by the file it came from) and its bytes in base64."""
    return {"name": path.relative_to(root).as_posix(), "data": base64.b64encode(path.read_bytes()).decode()}


def folder_figures(folder: Path, shown: set[str]) -> list[dict[str, str]]:
    """The figures at the top of a results folder (a study's ``curves.png``) that no section shows already."""
    if not folder.is_dir():
        return []
    return [image(p, folder) for p in sorted(folder.glob("*.png")) if p.name not in shown]


def study_section(folder: Path, rows: pd.DataFrame) -> dict[str, Any] | None:
    """A study folder's drift tables (summary.md's final values and slopes per method), or None elsewhere."""
    if not folder.is_dir() or not (folder / STUDY_SUMMARY).exists():
        return None
    note, tables = drift_tables(rows)
    return {"note": note, "header": DRIFT_HEADER, "tables": tables}


def _optuna(sweep_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """plotly.js and Optuna's interactive views, HTML that plotly writes (so marked safe, never escaped)."""
    from plotly.offline import get_plotlyjs

    from clutune.platform.record.publish import study_storage
    from clutune.platform.reports.plots import optuna_figures

    storage = study_storage(sweep_dir, (config.get("sweep") or {}).get("study_storage"))
    figures = optuna_figures(storage, sweep_dir.name)
    if not figures:
        return None
    views = [(n, Markup(f.to_html(full_html=False, include_plotlyjs=False))) for n, f in figures.items()]
    return {"plotly_js": Markup(get_plotlyjs()), "figures": views}


def _source(
    source: str, tracking_uri: str | None, scratch: Path
) -> tuple[pd.DataFrame, Path, Path, dict[str, Any], str]:
    """(rows, plots folder, the folder figure names are relative to, config, what) for a results folder, a sweep
    folder or an MLflow experiment."""
    folder = Path(source)
    if folder.is_dir():
        if not (folder / "results.parquet").exists():
            raise UserError(f"{folder} holds no results.parquet: not a results or sweep folder")
        rows = pd.read_parquet(folder / "results.parquet")
        record = folder / RECORD_DIR / "record.json"
        config = json.loads(record.read_text()).get("config", {}) if record.exists() else {}
        plots = folder / "plots"
        if not plots.exists() or not any(plots.glob("**/*.png")):
            return rows, _draw(rows, scratch), scratch, config, f"folder {folder.resolve()}"
        return rows, plots, folder, config, f"folder {folder.resolve()}"
    if _names_a_path(source):
        raise UserError(f"{source}: is not a folder (a report's source is a results or sweep folder, or an experiment)")
    from clutune.platform.record.export import experiment_rows

    rows = experiment_rows(source, tracking_uri)
    if rows.empty:
        raise UserError(f"MLflow experiment {source!r} has no runs with per-request metrics")
    params = [c for c in rows.columns if c.startswith("params.")]
    config = {c[len("params.") :]: rows[c].iloc[0] for c in params if rows[c].nunique() == 1}
    rows = rows.rename(columns={"run_id": "mlflow_run_id"}).assign(run_id=lambda f: f["mlflow_run_id"])
    return rows, _draw(rows, scratch), scratch, config, f"MLflow experiment {source!r}"


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
        rows, plots, root, config, what = _source(source, tracking_uri, Path(scratch))
        key = table_groups(rows)
        folder = Path(source)
        rows, pruned = _complete_trials(rows, folder, key)
        rdb = (config.get("sweep") or {}).get("study_storage") and (folder / "trials.csv").exists()
        is_sweep = folder.is_dir() and ((folder / "optuna-journal.log").exists() or rdb)
        table = summary(rows, key)
        convergence = report_section(folder, config) if folder.is_dir() else None  # a sweep's convergence.csv
        shown = {convergence["image"]["name"]} if convergence and convergence["image"] else set()
        page = _TEMPLATES.get_template("report.html").render(
            what=what,
            runs=rows["run_id"].nunique(),
            n_rows=len(rows),
            stamp=time.strftime("%Y-%m-%d %H:%M"),
            key=key,
            cells_note=cells_note("runs (seeds)"),
            bold_note=bold_note(table),
            metrics=list(dict.fromkeys(m for m, _ in table.columns)),
            rows=table_rows(table),
            pruned=pruned,
            convergence=convergence,
            study=study_section(folder, rows),
            plots=folder_figures(folder, shown) + [image(p, root) for p in sorted(plots.glob("*.png"))],
            run_plots=[
                {"name": run.name, "images": [image(p, root) for p in sorted(run.glob("*.png"))]}
                for run in sorted(p for p in plots.iterdir() if p.is_dir())
            ],
            optuna=_optuna(folder, config) if is_sweep else None,
            config=json.dumps(config, indent=1, default=str),
        )
    write_local_atomic(out, lambda tmp: tmp.write_text(page))
    return out


__all__ = ["summary", "table_groups", "write_report"]
