"""Once rows are on disk: draw figures into ``<folder>/plots`` and attach them to the MLflow runs.

Figures come from written rows on the driver (never from inside a trial), so the trainables stay free of
plotting and a folder can be redrawn and re-attached any time (``clutune sync`` does). The engine draws a
trial's per-run figures as soon as the trial ends; the figures over a whole grid come after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from clutune.core.storage import write_local_text
from clutune.guards.masking import drop_masked_password
from clutune.platform.record.tracking import SweepTracker
from clutune.platform.reports.plots import method_plots, optuna_html, run_plots


def _trial_of(frame: pd.DataFrame, run_id: str) -> str:
    if "trial_id" in frame and frame["trial_id"].notna().any():
        return str(frame["trial_id"].dropna().iloc[0])
    return run_id


Drawn = list[tuple[str, str, list[Path]]]  # (trial, where on its MLflow run, figure files)


def draw_runs(folder: Path, rows: pd.DataFrame) -> Drawn:
    """Per results run: ``plots/<run_id>/*.png``, with the MLflow run and folder each belongs in (``plots/``
    when the trial's child run holds one results run, ``plots/<run_id>/`` when a sweep trial averages seeds).
    Only CPU and local files: no MLflow call, so the engine can draw on a thread its record writes never wait
    for."""
    groups = list(rows.groupby("run_id", sort=True))
    runs_per_trial: dict[str, int] = {}
    for run_id, frame in groups:
        trial = _trial_of(frame, str(run_id))
        runs_per_trial[trial] = runs_per_trial.get(trial, 0) + 1
    drawn = []
    for run_id, frame in groups:
        trial = _trial_of(frame, str(run_id))
        title = f"{frame['method'].iloc[0]} seed {frame['seed'].iloc[0]} ({run_id})"
        paths = run_plots(frame, Path(folder) / "plots" / str(run_id), title)
        drawn.append((trial, "plots" if runs_per_trial[trial] == 1 else f"plots/{run_id}", paths))
    return drawn


def attach_runs(tracker: SweepTracker, drawn: Drawn) -> None:
    for trial, where, paths in drawn:
        for path in paths:
            tracker.log_artifact(trial, path, where)


def publish_runs(tracker: SweepTracker, folder: Path, rows: pd.DataFrame) -> list[Path]:
    """Per-run figures drawn and attached to their child runs; the files written."""
    drawn = draw_runs(folder, rows)
    attach_runs(tracker, drawn)
    return [path for _, _, paths in drawn for path in paths]


def publish_grid(tracker: SweepTracker, folder: Path, rows: pd.DataFrame, title: str) -> list[Path]:
    """compare / study: per-method curves on the parent (the engine drew the per-run figures as trials ended)."""
    written = []
    for path in method_plots(rows, Path(folder) / "plots", title):
        tracker.log_artifact(None, path, "plots")
        written.append(path)
    return written


def study_storage(sweep_dir: Path, configured: str | None) -> Any:
    """The sweep's Optuna storage: the configured RDB URL, else the journal file in the sweep folder."""
    if configured:  # recorded masked: the database client takes the password from its environment instead
        return drop_masked_password(configured)
    import optuna

    journal = Path(sweep_dir) / "optuna-journal.log"
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))


def best_trials_markdown(trials: pd.DataFrame, columns: list[str], top: int = 10) -> str:
    """The best complete trials by the first objective, as a Markdown table."""
    ok = trials[trials["status"] == "OK"] if "status" in trials else trials
    ranked = ok.sort_values(columns[0]).head(top) if columns and columns[0] in ok else ok.head(top)
    if ranked.empty:
        return "no trial completed\n"
    header = "| " + " | ".join(map(str, ranked.columns)) + " |"
    lines = [header, "|" + "---|" * len(ranked.columns)]
    for _, row in ranked.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def publish_sweep(
    tracker: SweepTracker,
    sweep_dir: Path,
    storage: Any,
    study_name: str,
    trials: pd.DataFrame,
    columns: list[str],
    with_study: bool = True,
) -> list[Path]:
    """sweep: Optuna's HTML views (``with_study``: a PBT population has no Optuna study) and the best-trials
    table on the parent (the engine drew the per-run figures as trials ended)."""
    sweep_dir = Path(sweep_dir)
    written = []
    views = optuna_html(study_storage(sweep_dir, storage), study_name, sweep_dir / "plots") if with_study else []
    for path in views:
        tracker.log_artifact(None, path, "plots")
        written.append(path)
    best = sweep_dir / "best_trials.md"
    write_local_text(best, best_trials_markdown(trials, columns))
    tracker.log_artifact(None, best)
    return written + [best]


__all__ = [
    "attach_runs",
    "best_trials_markdown",
    "draw_runs",
    "publish_grid",
    "publish_runs",
    "publish_sweep",
    "study_storage",
]
