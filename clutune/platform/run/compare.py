"""``clutune compare``: several methods on the same scenario, seeds and oracles, as a fixed grid of Tune trials.

Every (method, seed) pair is one trial of the engine that runs sweeps (:mod:`clutune.platform.run.engine`), so it
gets per-request checkpoints, ``--resume`` after a killed driver and an MLflow parent run with one child per
pair. All trials read the same oracle outputs from the object store: the oracles are trained once however many
methods and seeds there are. The table aggregates each run over its requests first, then reports the mean with a
95% confidence interval over seeds and marks the methods not significantly different from the best. With at
least 2 seeds and an oracle ensemble, the grid also gives each method's KLoM beside its floor
(:mod:`clutune.platform.reports.klom_report`).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune

from clutune.clu.methods import get_method
from clutune.core.config import Config, ConfigSource, Overrides, bare_overrides, load_config
from clutune.core.experiment import Prepared, build_method, hparams_source, method_hparams, validate_methods_section
from clutune.core.results import check_out_dir
from clutune.core.storage import write_local_atomic, write_local_text
from clutune.errors import UserError
from clutune.guards.folder_lock import check_unlocked, folder_lock
from clutune.guards.seeds import check_seed_option
from clutune.platform.record.publish import publish_grid
from clutune.platform.record.tracking import SweepTracker
from clutune.platform.reports.klom_report import (
    floor_count,
    klom_frames,
    klom_section,
    why_no_klom,
    write_floor_margins,
)
from clutune.platform.reports.stats import is_paired, markdown, method_table
from clutune.platform.run.engine import Grid, Oracles, check_resumable, execute
from clutune.platform.run.launch import Cluster, prepare_command, session
from clutune.platform.run.log import Log, print_line

TABLE_METRICS = (
    "kl_oracle_all",
    "kl_oracle_unlearn",
    "avg_gap",
    "gap_remain",
    "gap_unlearn",
    "gap_test",
    "mia_member_rate",
    "mia_efficacy",
    "acc_remain",
    "acc_unlearn",
    "acc_test",
    "forgetting",
    "seconds",
    "samples_processed",
)
# With an oracle ensemble: the KL to the members' mean, the method's KL to a member over their floor, and the floor
ENSEMBLE_TABLE_METRICS = ("kl_oracle_ens", "kl_over_floor", "oracle_floor")


@dataclass
class CompareResult:
    """What ``clutune.compare`` returns: every row, the table of means over seeds and the KLoM table (both also
    in comparison.md; ``klom`` is empty, and ``klom_note`` says why, where the grid computes no KLoM)."""

    rows: pd.DataFrame
    table: pd.DataFrame
    klom: pd.DataFrame
    klom_note: str | None
    out: Path
    parent_run_id: str
    tracking_uri: str
    oracles_total: int
    oracles_trained: int
    seconds: float

    def to_markdown(self) -> str:
        """The tables as the command prints them and ``comparison.md`` holds them: the means, then KLoM."""
        return format_table(self.table) + "\n\n" + klom_section(self.klom, self.klom_note)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run: mean over requests (NaN-skipping); then per method: mean with a 95% t-interval over seeds and
    the marks of the methods not significantly different from the best (:mod:`clutune.platform.reports.stats`)."""
    metrics = _metrics(rows.columns)
    per_run = rows.groupby(["method", "seed"])[metrics].mean().reset_index()
    return method_table(per_run, "method", metrics, is_paired(rows, "method"))


def format_table(table: pd.DataFrame) -> str:
    """``comparison.md`` and the printed table: the caption naming the test, then one row per method."""
    return markdown(table, _metrics(table.columns.get_level_values(0)))


def _metrics(columns: pd.Index) -> list[str]:
    """The table's columns: the ensemble's where the rows carry them (``oracle.ensemble`` ≥ 2)."""
    with_ensemble = set(ENSEMBLE_TABLE_METRICS) <= set(columns)
    return [*TABLE_METRICS, *(ENSEMBLE_TABLE_METRICS if with_ensemble else ())]


@dataclass(frozen=True)
class GridOptions:
    """A fixed (method, seed) grid and its folder: the options compare and study share, named like their flags."""

    methods: list[str]
    seeds: list[int]
    out: Path
    overwrite: bool = False
    resume: bool = False
    concurrency: int | None = None  # trials at once; None: the whole grid (Ray queues what does not fit)


@dataclass
class GridRun:
    """A finished (method, seed) grid: its rows, where they are, and the record it left."""

    rows: pd.DataFrame
    config: Config
    out: Path
    tracker: SweepTracker
    oracles_total: int
    oracles_trained: int
    seconds: float
    klom: pd.DataFrame  # per split and method, pooled over the scored requests; empty: not computed
    klom_note: str | None  # why no KLoM was computed; None when it was

    @property
    def klom_text(self) -> str:
        """The KLoM section of comparison.md and the study summary."""
        return klom_section(self.klom, self.klom_note)


def check_grid(config: Config, bare: dict[str, Any], options: GridOptions) -> None:
    """The grid's own inputs, before anything else is looked at."""
    validate_methods_section(config)
    if not options.methods or not options.seeds:
        raise UserError("--methods and --seeds must each name at least one")
    for seed in options.seeds:
        check_seed_option(seed, "--seeds")
    if len(set(options.methods)) != len(options.methods) or len(set(options.seeds)) != len(options.seeds):
        raise UserError("--methods or --seeds lists one twice")
    for m in options.methods:
        get_method(m)
    for key in bare:
        if not any(_has(m, key) for m in options.methods):
            methods = ", ".join(options.methods)
            raise UserError(f"--set {key}: none of the methods {methods} has a hyperparameter {key!r}")
    if options.concurrency is not None and options.concurrency < 1:
        raise UserError("--concurrency must be at least 1")


@contextlib.contextmanager
def method_grid(
    role: str, config: Config, bare: dict[str, Any], options: GridOptions, cluster: Cluster, log: Log = print_line
) -> Iterator[GridRun]:
    """Every (method, seed) pair with each method's tuned defaults, validated whole before any work; the caller
    summarises the finished grid inside the block, where a failure still marks the parent run FAILED."""
    t0 = time.perf_counter()
    check_grid(config, bare, options)
    out = options.out.resolve()
    check_unlocked(out)
    if options.resume:
        check_resumable(str(out / "tune" / role), f"--resume: nothing to resume in {out}")
    else:
        check_out_dir(out, options.overwrite)
    prep = prepare_command(config, cluster)
    fixed, effective = {}, {}
    for m in options.methods:
        fixed[m] = {k: v for k, v in bare.items() if _has(m, k)}
        hp = method_hparams(config, m, config.dataset.name, fixed[m])
        build_method(prep, m, hp, options.seeds[0])  # refuses a scenario the method cannot serve (clpu)
        effective[m] = {**asdict(hp), "source": hparams_source(m, config.dataset.name)}
    floor = floor_count(config.oracle.ensemble, len(options.seeds))
    with folder_lock(out), session(prep, out, cluster, log, floor) as run:
        if not options.resume:
            for stale in ("parts", "tune"):  # with --overwrite: an earlier grid's rows and state must not leak in
                shutil.rmtree(out / stale, ignore_errors=True)
        meta = {"methods": options.methods, "seeds": options.seeds, "fixed": bare, "hparams": effective}
        run.tracker.start_parent(f"{config.name}-{role}", config.as_dict(), {}, meta, role)
        res = config.sweep.trial_resources
        grid = Grid(
            name=role,
            storage_path=str(out / "tune"),
            out=out,
            context={
                "config": config.as_dict(),
                "method": options.methods[0],
                "seeds": options.seeds,
                "oracle_refs": run.oracles.per_request,
                "objectives": list(config.sweep.objectives),
                "robust": 0.0,
                "fixed": fixed,
            },
            param_keys=["method", "seed"],
            role="run",
            param_space={"method": tune.grid_search(options.methods), "seed": tune.grid_search(options.seeds)},
            concurrency=options.concurrency or len(options.methods) * len(options.seeds),
            resources={"cpu": res.cpu, "gpu": res.gpu},
            max_failures=config.sweep.max_failures,
        )
        execute(grid, prep, run.tracker, options.resume, log)
        rows = pd.read_parquet(out / "results.parquet")
        klom, note = grid_klom(prep, run.oracles, out, rows, options, log)
        yield GridRun(
            rows=rows,
            config=config,
            out=out,
            tracker=run.tracker,
            oracles_total=len(run.oracles.plan.owned),
            oracles_trained=run.oracles.trained(),
            seconds=time.perf_counter() - t0,
            klom=klom,
            klom_note=note,
        )


def grid_klom(
    prep: Prepared, oracles: Oracles, out: Path, rows: pd.DataFrame, options: GridOptions, log: Log = print_line
) -> tuple[pd.DataFrame, str | None]:
    """KLoM of the finished grid (its summary, also ``klom_summary.csv``; ``klom.csv`` per request), or an empty
    frame and the line that says why there is none. The floor models' margins are written first, beside the members'."""
    note = why_no_klom(prep.config.oracle.ensemble, len(options.seeds))
    if note is not None:
        log(note)
        return pd.DataFrame(), note
    scored = [k for k, key in enumerate(oracles.plan.key_of_request) if key is not None]
    floors = oracles.floor_per_request
    for k in scored:
        write_floor_margins(out, k, ray.get(floors[k]), prep.dataset)
    estimator = prep.config.evaluation.klom.estimator
    per_request, summary = klom_frames(out, rows, options.methods, prep.scenario, scored, estimator)
    write_local_atomic(out / "klom.csv", lambda tmp: per_request.to_csv(tmp, index=False))
    write_local_atomic(out / "klom_summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    return summary, None


def run_compare(
    config: ConfigSource,
    options: GridOptions,
    overrides: Overrides = None,
    cluster: Cluster | None = None,
    log: Log = print_line,
) -> CompareResult:
    """``clutune compare``: the grid, then its table (comparison.md, MLflow) and figures."""
    loaded = load_config(config, overrides)
    with method_grid("compare", loaded, bare_overrides(overrides), options, cluster or Cluster(), log) as done:
        table = summary_table(done.rows)
        text = format_table(table) + "\n\n" + done.klom_text
        write_local_text(done.out / "comparison.md", text + "\n")
        done.tracker.log_text(done.tracker.parent_id, text, "comparison.md")
        publish_grid(done.tracker, done.out, done.rows, f"{done.config.name} compare")  # figures: plots/, MLflow
        done.tracker.finish({}, {"comparison.csv": table.reset_index()}, {})
        return CompareResult(
            rows=done.rows,
            table=table,
            klom=done.klom,
            klom_note=done.klom_note,
            out=done.out,
            parent_run_id=done.tracker.parent_id,
            tracking_uri=done.tracker.uri,
            oracles_total=done.oracles_total,
            oracles_trained=done.oracles_trained,
            seconds=done.seconds,
        )


def _has(method: str, key: str) -> bool:
    return key in {f.name for f in fields(get_method(method).Hparams)}


__all__ = [
    "CompareResult",
    "GridOptions",
    "GridRun",
    "check_grid",
    "format_table",
    "grid_klom",
    "method_grid",
    "run_compare",
    "summary_table",
]
