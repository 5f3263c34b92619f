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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune

from clutune.clu.methods import get_method, has_hparam
from clutune.core.config import Config, ConfigSource, Overrides, bare_overrides, load_config
from clutune.core.experiment import (
    Prepared,
    attack_cost_line,
    build_method,
    hparams_source,
    method_hparams,
    prepare_in_worker,
    shadows_for,
    validate_methods_section,
)
from clutune.core.results import check_out_dir
from clutune.core.storage import write_local_atomic, write_local_text
from clutune.errors import UserError
from clutune.guards.folder_lock import check_unlocked, folder_lock
from clutune.guards.seeds import check_seed_option
from clutune.platform.record.publish import publish_grid
from clutune.platform.record.tracking import SweepTracker
from clutune.platform.reports.epsilon_report import (
    epsilon_frames,
    epsilon_section,
    grid_accuracies,
    why_no_epsilon,
)
from clutune.platform.reports.klom_report import (
    floor_count,
    klom_frames,
    klom_section,
    why_no_klom,
    write_floor_margins,
)
from clutune.platform.reports.relapse_report import write_relapse
from clutune.platform.reports.stats import is_paired, long_form, markdown, method_table
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
# With evaluation.ulira: the attack on the forget set and on the retained set, and the oracle's AUC beside them
ULIRA_TABLE_METRICS = ("ulira_auc", "ulira_tpr1", "ulira_tpr01", "ulira_auc_retain", "oracle_ulira_auc")
# With evaluation.relearn / evaluation.relapse on: the attacks' columns, each where the rows carry it
ATTACK_TABLE_METRICS = ("relearn_gap", "relearn_acc", "relapse_acc")


COMPARISON_CSV = "comparison.csv"  # the table in long form beside comparison.md: Holm-adjusted p and comparator


@dataclass
class CompareResult:
    """What ``clutune.compare`` returns: every row, the table of means over seeds (``summary``: the same in long
    form) and the KLoM table (both also in comparison.md; ``klom`` is empty, and ``klom_note`` says why, where
    the grid computes no KLoM)."""

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
    epsilon: pd.DataFrame = field(default_factory=pd.DataFrame)  # the ε score pooled (evaluation.epsilon)
    epsilon_note: str | None = None  # why no ε score was computed (None: computed, or not asked for)

    @property
    def summary(self) -> pd.DataFrame:
        """``table`` in long form, one row per (method, metric): method, metric, mean, lo, hi, n, comparator (the
        column's best approximate method), p_holm (Holm-adjusted, against the comparator), tied, exact; the rows
        of comparison.csv. A notebook filters it (``summary.query("metric == 'avg_gap'")``) or
        pivots it as it likes, where ``table``'s two-level header would first need unstacking."""
        return long_form(self.table)

    def to_markdown(self) -> str:
        """The tables as the command prints them and ``comparison.md`` holds them: the means, KLoM, then ε."""
        klom = klom_section(self.klom, self.klom_note)
        return format_table(self.table, COMPARISON_CSV) + "\n\n" + klom + epsilon_text(self.epsilon, self.epsilon_note)


def epsilon_text(summary: pd.DataFrame, note: str | None) -> str:
    """The ε section after KLoM's; nothing where the ε score was not asked for."""
    return "" if summary.empty and note is None else "\n" + epsilon_section(summary, note)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run: mean over requests (NaN-skipping); then per method: mean with a 95% t-interval over seeds and
    the marks of the methods not significantly different from the best (:mod:`clutune.platform.reports.stats`)."""
    metrics = _metrics(rows.columns)
    per_run = rows.groupby(["method", "seed"])[metrics].mean().reset_index()
    return method_table(per_run, "method", metrics, is_paired(rows, "method"))


def format_table(table: pd.DataFrame, p_file: str | None = None) -> str:
    """``comparison.md`` and the printed table: the caption naming the test, the comparators and ``p_file`` (the
    long form written beside it, where one is), then one row per method."""
    return markdown(table, _metrics(table.columns.get_level_values(0)), p_file=p_file)


def _metrics(columns: pd.Index) -> list[str]:
    """The table's columns: the ensemble's where the rows carry them (``oracle.ensemble`` ≥ 2), and the attacks'
    where they were on."""
    with_ensemble = set(ENSEMBLE_TABLE_METRICS) <= set(columns)
    with_ulira = set(ULIRA_TABLE_METRICS) <= set(columns)
    attacks = [m for m in ATTACK_TABLE_METRICS if m in set(columns)]
    return [
        *TABLE_METRICS,
        *(ENSEMBLE_TABLE_METRICS if with_ensemble else ()),
        *(ULIRA_TABLE_METRICS if with_ulira else ()),
        *attacks,
    ]


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
    epsilon: pd.DataFrame = field(default_factory=pd.DataFrame)  # the ε score pooled; empty: not computed
    epsilon_note: str | None = None  # why no ε score was computed (None: computed, or not asked for)

    @property
    def klom_text(self) -> str:
        """The KLoM section of comparison.md and the study summary, and the ε section where it was asked for."""
        return klom_section(self.klom, self.klom_note) + epsilon_text(self.epsilon, self.epsilon_note)


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
        if not any(has_hparam(m, key) for m in options.methods):
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
    cost = attack_cost_line(prep, len(options.methods) * len(options.seeds))
    if cost is not None:
        log(cost)
    fixed, effective = {}, {}
    for m in options.methods:
        fixed[m] = {k: v for k, v in bare.items() if has_hparam(m, k)}
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
        train_shadows(prep)
        execute(grid, prep, run.tracker, options.resume, log)
        rows = pd.read_parquet(out / "results.parquet")
        write_relapse(rows, out)
        klom, note = grid_klom(prep, run.oracles, out, rows, options, log)
        epsilon, epsilon_note = grid_epsilon(prep, run.oracles, out, rows, options, log)
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
            epsilon=epsilon,
            epsilon_note=epsilon_note,
        )


@ray.remote(max_retries=2)
def _shadows_task(config: dict[str, Any], k: int) -> int:
    """Request k's U-LiRA shadows trained (or found) and cached on any worker; the trials then read the cache."""
    return len(shadows_for(prepare_in_worker(config), k).outputs)


def train_shadows(prep: Prepared) -> None:
    """Every attacked request's shadows, before the trials: each request's pack trains once, in parallel, rather
    than in every trial that reaches it first."""
    wanted = [k for k, attacked in enumerate(prep.ulira_at) if attacked]
    if wanted:
        config = prep.config.as_dict()
        res = prep.config.sweep.oracle_resources
        ray.get([_shadows_task.options(num_cpus=res.cpu, num_gpus=res.gpu).remote(config, k) for k in wanted])


def grid_epsilon(
    prep: Prepared, oracles: Oracles, out: Path, rows: pd.DataFrame, options: GridOptions, log: Log = print_line
) -> tuple[pd.DataFrame, str | None]:
    """The ε score of the finished grid beside its ceiling (``epsilon_summary.csv``; ``epsilon.csv`` per request,
    ``epsilon_examples.csv`` per forget sample), or an empty frame and the line that says why there is none
    (None where ``evaluation.epsilon`` is off). Reads the margins :func:`grid_klom` completed."""
    cfg = prep.config
    if not cfg.evaluation.epsilon.enabled:
        return pd.DataFrame(), None
    note = why_no_epsilon(True, cfg.oracle.ensemble, len(options.seeds))
    scored = [
        k
        for k, key in enumerate(oracles.plan.key_of_request)
        if key is not None and prep.scenario.requests[k].kind == "unlearn"
    ]
    if note is None and not scored:
        note = "ε score not computed: no unlearn request is scored against an oracle"
    if note is not None:
        log(note)
        return pd.DataFrame(), note
    members, floors = oracles.per_request, oracles.floor_per_request
    accuracies = {k: grid_accuracies(members[k], floors[k], prep.dataset, prep.owned_ids(k).numpy()) for k in scored}
    per_request, summary, examples = epsilon_frames(
        out, rows, options.methods, prep.scenario, scored, accuracies, cfg.evaluation.epsilon.bootstrap
    )
    write_local_atomic(out / "epsilon.csv", lambda tmp: per_request.to_csv(tmp, index=False))
    write_local_atomic(out / "epsilon_summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    write_local_atomic(out / "epsilon_examples.csv", lambda tmp: examples.to_csv(tmp, index=False))
    return summary, None


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
        text = format_table(table, COMPARISON_CSV) + "\n\n" + done.klom_text
        write_local_text(done.out / "comparison.md", text + "\n")
        write_local_atomic(done.out / COMPARISON_CSV, lambda tmp: long_form(table).to_csv(tmp, index=False))
        done.tracker.log_text(done.tracker.parent_id, text, "comparison.md")
        publish_grid(done.tracker, done.out, done.rows, f"{done.config.name} compare")  # figures: plots/, MLflow
        done.tracker.finish({}, {COMPARISON_CSV: long_form(table)}, {})
        return CompareResult(
            rows=done.rows,
            table=table,
            klom=done.klom,
            klom_note=done.klom_note,
            epsilon=done.epsilon,
            epsilon_note=done.epsilon_note,
            out=done.out,
            parent_run_id=done.tracker.parent_id,
            tracking_uri=done.tracker.uri,
            oracles_total=done.oracles_total,
            oracles_trained=done.oracles_trained,
            seconds=done.seconds,
        )


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
