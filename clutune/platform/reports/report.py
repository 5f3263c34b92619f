"""``clutune report``: one HTML page that needs nothing beside it and makes no request when opened.

The page is the template ``templates/report.html`` rendered with autoescaping: method, run, experiment and
config names are text wherever they appear, whatever characters they hold.

Images are base64 data URIs, the style sheet is inline, and Optuna's interactive views share one inlined copy
of plotly.js. The table is computed like ``comparison.md`` (per run the mean over requests, then the mean with a
95% confidence interval over seeds, significance marks against the best approximate method, exact methods
labelled as the floor); each cell also carries its unrounded
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from clutune.core.storage import write_local_atomic
from clutune.errors import UserError
from clutune.guards.received_folder import ReceivedFolder
from clutune.platform.record.record_file import not_connecting, read_record, study_storage
from clutune.platform.reports.attack_plots import attack_plots
from clutune.platform.reports.stats import bold_note, cell, cells_note, is_paired, method_table, single_run
from clutune.platform.reports.study_report import DRIFT_HEADER, STUDY_SUMMARY, drift_tables
from clutune.platform.run.compare import ATTACK_TABLE_METRICS, TABLE_METRICS
from clutune.platform.run.log import Log, print_line
from clutune.platform.search.convergence import CSV as CONVERGENCE_CSV
from clutune.platform.search.convergence import PLOT as CONVERGENCE_PLOT
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
    metrics = [m for m in (*TABLE_METRICS, *ATTACK_TABLE_METRICS) if m in rows]
    how = {m: "mean" for m in metrics} | ({"seed": "first"} if "seed" in rows else {})
    per_run = rows.groupby([key, "run_id"]).agg(how).reset_index()
    if "seed" not in per_run:
        per_run["seed"] = per_run["run_id"]
    return method_table(per_run, key, metrics, is_paired(rows, key))


def table_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The comparison table as the template reads it: per group its cells, each with its text, its mark and its
    unrounded mean, std, interval, Holm p-value and run count (written as ``data-`` attributes); an exact
    method's label says it is the floor."""
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
        exact = str(name) in table.attrs.get("floors", ())
        rows.append({"group": str(name), "label": f"{name} (exact)" if exact else str(name), "cells": cells})
    return rows


def _complete_trials(
    rows: pd.DataFrame, received: ReceivedFolder | None, key: str
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """A sweep's comparison ranks complete trials only: a trial the scheduler stopped early (``PRUNED`` in
    ``trials.csv``) has a mean over the few requests it reached, which early requests flatter. Those trials are
    listed under the table with the requests they reached."""
    trials_csv = received.file("trials.csv") if received is not None and key == "trial_id" else None
    if trials_csv is None:
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


def folder_figures(received: ReceivedFolder | None, shown: set[str]) -> list[dict[str, str]]:
    """The figures at the top of a results folder (a study's ``curves.png``) that no section shows already, each
    checked to lie inside the folder."""
    if received is None:
        return []
    found = [p for p in received.entries(".") if p.suffix == ".png" and p.is_file() and p.name not in shown]
    return [image(p, received.given) for p in found]


def study_section(received: ReceivedFolder | None, rows: pd.DataFrame) -> dict[str, Any] | None:
    """A study folder's drift tables (summary.md's final values and slopes per method), or None elsewhere."""
    if received is None or received.file(STUDY_SUMMARY) is None:
        return None
    note, tables = drift_tables(rows)
    return {"note": note, "header": DRIFT_HEADER, "tables": tables}


def _optuna(storage: Any, study_name: str) -> dict[str, Any] | None:
    """plotly.js and Optuna's interactive views, HTML that plotly writes (so marked safe, never escaped)."""
    from plotly.offline import get_plotlyjs

    from clutune.platform.reports.plots import optuna_figures

    figures = optuna_figures(storage, study_name)
    if not figures:
        return None
    views = [(n, Markup(f.to_html(full_html=False, include_plotlyjs=False))) for n, f in figures.items()]
    return {"plotly_js": Markup(get_plotlyjs()), "figures": views}


def _sweep_storage(received: ReceivedFolder, record: dict[str, Any] | None, given: str | None, log: Log) -> Any:
    """The Optuna storage of a sweep folder: the one the user named, else the folder's own journal; None for a
    folder that is not a sweep. A storage the received record names is never opened on its own: it could create
    a file anywhere, or send the user's database credentials to a host the sender chose."""
    named = study_storage(record)
    if named and not given:
        log(not_connecting("study storage", named, "--study-storage"))
    journal = received.file("optuna-journal.log")
    if given and (journal is not None or received.file("trials.csv") is not None):
        return given
    if journal is None:
        return None
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))


def _read_rows(path: Path) -> pd.DataFrame:
    try:
        rows = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 (a received file may hold anything)
        raise UserError(f"{path}: not a results table ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    missing = [c for c in ("method", "run_id", "request") if c not in rows]
    if missing:
        raise UserError(f"{path}: not a results table (no column {missing[0]!r})")
    return rows


Images = tuple[list[Path], list[tuple[str, list[Path]]]]


@dataclass
class _Source:
    """What a page is made of: the rows, the config shown, the images, and for a folder the folder (read as
    received) and its validated record."""

    rows: pd.DataFrame
    config: dict[str, Any]
    images: Images
    root: Path  # the folder the images' names are relative to: the source folder, or the scratch they were drawn in
    what: str
    received: ReceivedFolder | None = None
    record: dict[str, Any] | None = None


def _source(source: str, tracking_uri: str | None, scratch: Path) -> _Source:
    """A results folder, a sweep folder or an MLflow experiment; a folder's record and rows are checked before
    anything is drawn, and a folder without plots gets them drawn from its rows."""
    folder = Path(source)
    if folder.is_dir():
        received = ReceivedFolder(folder)
        results = received.file("results.parquet")
        if results is None:
            raise UserError(f"{folder} holds no results.parquet: not a results or sweep folder")
        rows = _read_rows(results)
        record = read_record(received)
        images, root = _images(received, "plots"), received.given
        if not images[0] and not any(found for _, found in images[1]):
            images, root = _images(ReceivedFolder(_draw(rows, scratch)), "."), scratch
        config = (record or {}).get("config") or {}
        return _Source(rows, config, images, root, f"folder {folder.resolve()}", received, record)
    if _names_a_path(source):
        raise UserError(f"{source}: is not a folder (a report's source is a results or sweep folder, or an experiment)")
    from clutune.platform.record.export import experiment_rows

    rows = experiment_rows(source, tracking_uri)
    if rows.empty:
        raise UserError(f"MLflow experiment {source!r} has no runs with per-request metrics")
    params = [c for c in rows.columns if c.startswith("params.")]
    config = {c[len("params.") :]: rows[c].iloc[0] for c in params if rows[c].nunique() == 1}
    rows = rows.rename(columns={"run_id": "mlflow_run_id"}).assign(run_id=lambda f: f["mlflow_run_id"])
    images = _images(ReceivedFolder(_draw(rows, scratch)), ".")
    return _Source(rows, config, images, scratch, f"MLflow experiment {source!r}")


def _images(received: ReceivedFolder, under: str) -> Images:
    """``<under>/*.png`` and ``<under>/<run>/*.png``, every entry checked before any is read: a link out of the
    folder (to ``~/.ssh``, to ``/``) is refused, never embedded in the page."""
    top, runs = [], []
    for entry in received.entries(under):
        if entry.is_dir():
            found = [p for p in received.entries(f"{under}/{entry.name}") if p.suffix == ".png" and p.is_file()]
            runs.append((entry.name, found))
        elif entry.suffix == ".png" and entry.is_file():
            top.append(entry)
    return top, runs


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


def write_report(
    source: str,
    out: Path,
    tracking_uri: str | None = None,
    study_storage_url: str | None = None,
    log: Log = print_line,
) -> Path:
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out}: expected an .html file name")
    if not out.parent.exists():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    with tempfile.TemporaryDirectory() as scratch:
        got = _source(source, tracking_uri, Path(scratch))
        received, config, (plots, run_plots) = got.received, got.config, got.images
        key = table_groups(got.rows)
        rows, pruned = _complete_trials(got.rows, received, key)
        storage = _sweep_storage(received, got.record, study_storage_url, log) if received is not None else None
        table = summary(rows, key)
        # drawn beside the page, never into the received folder; an MLflow experiment has no such files
        attacks = attack_plots(received, rows, Path(scratch) / "attacks") if received is not None else []
        convergence = _convergence(received, config)
        shown = {convergence["image"]["name"]} if convergence and convergence["image"] else set()
        page = _TEMPLATES.get_template("report.html").render(
            what=got.what,
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
            study=study_section(received, rows),
            plots=folder_figures(received, shown) + [image(p, got.root) for p in plots],
            attacks=[image(p, Path(scratch) / "attacks") for p in attacks],
            run_plots=[{"name": name, "images": [image(p, got.root) for p in found]} for name, found in run_plots],
            optuna=_optuna(storage, received.root.name) if storage is not None else None,
            config=json.dumps(config, indent=1, default=str),
        )
    write_local_atomic(out, lambda tmp: tmp.write_text(page))
    return out


def _convergence(received: ReceivedFolder | None, config: dict[str, Any]) -> dict[str, Any] | None:
    """A sweep's convergence section, its files checked to lie inside the folder first."""
    if received is None or received.file(CONVERGENCE_CSV) is None:
        return None
    received.file(CONVERGENCE_PLOT)
    return report_section(received.given, config)


__all__ = ["summary", "table_groups", "write_report"]
