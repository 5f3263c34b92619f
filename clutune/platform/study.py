"""``clutune study``: long-stream stability of several methods, as a fixed (method, seed) grid on the engine.

A study is a comparison read differently: what matters is how each metric moves over hundreds of requests,
not its mean. So it runs the same grid as ``compare`` (same trainable, checkpoints, resume and MLflow record)
and reports curves per request and drift slopes instead of a table of means.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clutune.platform.compare import run_method_grid
from clutune.platform.publish import publish_grid
from clutune.platform.study_report import plot_curves, summary_markdown

_print = functools.partial(print, flush=True)


@dataclass
class Study:
    rows: pd.DataFrame
    out: Path
    oracles_total: int
    oracles_trained: int
    parent_run_id: str
    tracking_uri: str
    seconds: float


def run_study(
    config_path: str,
    methods: list[str],
    seeds: list[int],
    out: Path,
    sets: list[str] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    log: Any = _print,
    overwrite: bool = False,
    resume: bool = False,
    tracking_uri: str | None = None,
    tracking: bool = True,
) -> Study:
    args = (config_path, methods, seeds, out, sets, address, num_cpus, log, overwrite, resume, tracking_uri)
    done = run_method_grid("study", *args, tracking=tracking)
    rows = done.rows
    n_requests = int(rows["request"].max()) + 1 if len(rows) else 0
    evaluated = int(rows.loc[rows["seed"] == rows["seed"].iloc[0]].groupby("method")["oracle_evaluated"].sum().max())
    header = (
        f"# Study {done.config.name}: {', '.join(methods)} over {n_requests} requests, seeds {seeds}\n\n"
        f"Oracle policy `{done.config.oracle.policy}`: {evaluated} of {n_requests} requests scored against an exact "
        f"oracle; {done.oracles_total} distinct oracles, {done.oracles_trained} trained by this study, "
        f"{done.oracles_total - done.oracles_trained} found cached.\n\n"
    )
    plot_curves(rows, done.out / "curves.png")
    (done.out / "summary.md").write_text(header + summary_markdown(rows))
    tracker = done.tracker
    tracker.client.log_artifact(tracker.parent_id, str(done.out / "curves.png"))
    tracker.client.log_artifact(tracker.parent_id, str(done.out / "summary.md"))
    publish_grid(tracker, done.out, rows, f"{done.config.name} study")  # figures: plots/, MLflow
    oracle_counts = {"oracles_total": done.oracles_total, "oracles_trained": done.oracles_trained}
    tracker.finish({"metrics": oracle_counts}, {}, {})
    return Study(
        rows=rows,
        out=done.out,
        oracles_total=done.oracles_total,
        oracles_trained=done.oracles_trained,
        parent_run_id=tracker.parent_id,
        tracking_uri=tracker.uri,
        seconds=done.seconds,
    )


__all__ = ["Study", "run_study"]
