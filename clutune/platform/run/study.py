"""``clutune study``: long-stream stability of several methods, as a fixed (method, seed) grid on the engine.

A study is a comparison read differently: what matters is how each metric moves over hundreds of requests,
not its mean. So it runs the same grid as ``compare`` (same trainable, checkpoints, resume and MLflow record)
and reports curves per request and drift slopes instead of a table of means, and KLoM beside its floor as compare
does (with at least 2 seeds and an oracle ensemble; klom.csv per request).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clutune.core.config import ConfigSource, Overrides, bare_overrides, load_config
from clutune.core.storage import write_local_atomic, write_local_text
from clutune.platform.record.publish import publish_grid
from clutune.platform.reports.plots import relapse_plot
from clutune.platform.reports.stats import long_form
from clutune.platform.reports.study_report import (
    CURVES,
    STUDY_COMPARISON,
    STUDY_SUMMARY,
    comparison_table,
    plot_curves,
    summary_frame,
    summary_markdown,
)
from clutune.platform.run.compare import GridOptions, method_grid
from clutune.platform.run.launch import Cluster
from clutune.platform.run.log import Log, print_line


@dataclass
class StudyResult:
    """What ``clutune.study`` returns: every row (one per run and request), the summary (final value and drift
    slope per method and metric, with intervals over seeds: summary.md's numbers), the KLoM table (empty, and
    ``klom_note`` says why, where none was computed) and where the files are."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    klom: pd.DataFrame
    klom_note: str | None
    out: Path
    oracles_total: int
    oracles_trained: int
    parent_run_id: str
    tracking_uri: str
    seconds: float


def run_study(
    config: ConfigSource,
    options: GridOptions,
    overrides: Overrides = None,
    cluster: Cluster | None = None,
    log: Log = print_line,
) -> StudyResult:
    """``clutune study``: the grid, then its curves, summary.md and figures."""
    loaded = load_config(config, overrides)
    with method_grid("study", loaded, bare_overrides(overrides), options, cluster or Cluster(), log) as done:
        rows = done.rows
        n_requests = int(rows["request"].max()) + 1 if len(rows) else 0
        first_seed = rows["seed"] == rows["seed"].iloc[0]
        evaluated = int(rows.loc[first_seed].groupby("method")["oracle_evaluated"].sum().max())
        header = (
            f"# Study {done.config.name}: {', '.join(options.methods)} over {n_requests} requests, "
            f"seeds {options.seeds}\n\n"
            f"Oracle policy `{done.config.oracle.policy}`: {evaluated} of {n_requests} requests scored against an "
            f"exact oracle; {done.oracles_total} distinct oracles, {done.oracles_trained} trained by this study, "
            f"{done.oracles_total - done.oracles_trained} found cached.\n\n"
        )
        plot_curves(rows, done.out / CURVES)
        relapse = relapse_plot(rows, done.out / "relapse.png", f"{done.config.name} study")
        if relapse is not None:  # do unlearned sets come back as the stream goes on? (relapse.csv beside it)
            done.tracker.client.log_artifact(done.tracker.parent_id, str(relapse))
        write_local_text(done.out / STUDY_SUMMARY, header + summary_markdown(rows) + "\n" + done.klom_text)
        comparison = long_form(comparison_table(rows))
        write_local_atomic(done.out / STUDY_COMPARISON, lambda tmp: comparison.to_csv(tmp, index=False))
        tracker = done.tracker
        tracker.client.log_artifact(tracker.parent_id, str(done.out / CURVES))
        tracker.client.log_artifact(tracker.parent_id, str(done.out / STUDY_SUMMARY))
        publish_grid(tracker, done.out, rows, f"{done.config.name} study")  # figures: plots/, MLflow
        oracle_counts = {"oracles_total": done.oracles_total, "oracles_trained": done.oracles_trained}
        tracker.finish({"metrics": oracle_counts}, {}, {})
        return StudyResult(
            rows=rows,
            summary=summary_frame(rows),
            klom=done.klom,
            klom_note=done.klom_note,
            out=done.out,
            oracles_total=done.oracles_total,
            oracles_trained=done.oracles_trained,
            parent_run_id=tracker.parent_id,
            tracking_uri=tracker.uri,
            seconds=done.seconds,
        )


__all__ = ["StudyResult", "run_study"]
