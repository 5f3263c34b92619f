"""``clutune compare``: several methods on the same scenario, seeds and oracles, as a fixed grid of Tune trials.

Every (method, seed) pair is one trial of the engine that runs sweeps (:mod:`clutune.platform.engine`), so it
gets per-request checkpoints, ``--resume`` after a killed driver and an MLflow parent run with one child per
pair. All trials read the same oracle outputs from the object store: the oracles are trained once however many
methods and seeds there are. The table aggregates each run over its requests first, then reports the mean with a
95% confidence interval over seeds and marks the methods not significantly different from the best.
"""

from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from clutune.clu.methods import get_method
from clutune.config import Config, bare_overrides, load_config
from clutune.errors import UserError
from clutune.experiment import build_method, method_hparams, prepare, validate_methods_section
from clutune.platform.engine import Grid, absolutize, check_resumable, ensure_ray, execute, leased_oracles
from clutune.platform.publish import publish_grid
from clutune.platform.ray_address import check_ray_address
from clutune.platform.stats import is_paired, markdown, method_table
from clutune.platform.tracking import SweepTracker, resolve_tracking_uri
from clutune.results import check_out_dir

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
_print = functools.partial(print, flush=True)


@dataclass
class Comparison:
    rows: pd.DataFrame
    table: pd.DataFrame
    seconds: float


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run: mean over requests (NaN-skipping); then per method: mean with a 95% t-interval over seeds and
    the marks of the methods not significantly different from the best (:mod:`clutune.platform.stats`)."""
    per_run = rows.groupby(["method", "seed"])[list(TABLE_METRICS)].mean().reset_index()
    return method_table(per_run, "method", TABLE_METRICS, is_paired(rows, "method"))


def format_table(table: pd.DataFrame) -> str:
    """``comparison.md`` and the printed table: the caption naming the test, then one row per method."""
    return markdown(table, TABLE_METRICS)


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


def run_method_grid(
    role: str,
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
    concurrency: int | None = None,
    tracking: bool = True,
) -> GridRun:
    """Every (method, seed) pair with each method's tuned defaults, validated whole before any work."""
    t0 = time.perf_counter()
    config = load_config(config_path, sets)
    validate_methods_section(config)
    if not methods or not seeds:
        raise UserError("--methods and --seeds must each name at least one")
    if len(set(methods)) != len(methods) or len(set(seeds)) != len(seeds):
        raise UserError("--methods or --seeds lists one twice")
    bare = bare_overrides(sets)
    for key in bare:
        if not any(_has(m, key) for m in methods):
            raise UserError(f"--set {key}: none of the methods {', '.join(methods)} has a hyperparameter {key!r}")
    absolutize(config)
    check_ray_address(address)
    prep = prepare(config)
    fixed = {}
    for m in methods:
        fixed[m] = {k: v for k, v in bare.items() if _has(m, k)}
        hp = method_hparams(config, m, config.dataset.name, fixed[m])
        build_method(prep, m, hp, seeds[0])  # refuses a scenario the method cannot serve (clpu), before any work
    out = out.resolve()
    if resume:
        check_resumable(str(out / "tune" / role), f"--resume: nothing to resume in {out}")
    if not resume:
        check_out_dir(out, overwrite)
        for stale in ("parts", "tune"):  # with --overwrite: an earlier grid's rows and state must not leak in
            shutil.rmtree(out / stale, ignore_errors=True)
    uri = resolve_tracking_uri(tracking_uri)
    tracker = SweepTracker(uri, config.sweep.experiment or config.name, out, enabled=tracking)

    ensure_ray(address, num_cpus)
    with leased_oracles(prep, log) as oracles:
        tracker.start_parent(
            f"{config.name}-{role}", config.as_dict(), {}, {"methods": methods, "seeds": seeds, "fixed": bare}, role
        )
        res = config.sweep.trial_resources
        grid = Grid(
            name=role,
            storage_path=str(out / "tune"),
            out=out,
            context={
                "config": config.as_dict(),
                "method": methods[0],
                "seeds": seeds,
                "oracle_refs": oracles.per_request,
                "objectives": list(config.sweep.objectives),
                "robust": 0.0,
                "fixed": fixed,
            },
            param_keys=["method", "seed"],
            role="run",
            param_space={"method": tune.grid_search(methods), "seed": tune.grid_search(seeds)},
            concurrency=concurrency or len(methods) * len(seeds),
            resources={"cpu": res.cpu, "gpu": res.gpu},
            max_failures=config.sweep.max_failures,
        )
        execute(grid, prep, tracker, resume, log)
    frame = pd.read_parquet(out / "results.parquet")
    return GridRun(
        rows=frame,
        config=config,
        out=out,
        tracker=tracker,
        oracles_total=len(oracles.plan.owned),
        oracles_trained=oracles.trained(),
        seconds=time.perf_counter() - t0,
    )


def run_compare(
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
) -> Comparison:
    args = (config_path, methods, seeds, out, sets, address, num_cpus, log, overwrite, resume, tracking_uri)
    done = run_method_grid("compare", *args, tracking=tracking)
    table = summary_table(done.rows)
    text = format_table(table)
    (done.out / "comparison.md").write_text(text + "\n")
    done.tracker.log_text(done.tracker.parent_id, text, "comparison.md")
    publish_grid(done.tracker, done.out, done.rows, f"{done.config.name} compare")  # figures: plots/, MLflow
    done.tracker.finish({}, {"comparison.csv": table.reset_index()}, {})
    return Comparison(done.rows, table, done.seconds)


def _has(method: str, key: str) -> bool:
    return key in {f.name for f in fields(get_method(method).Hparams)}


__all__ = ["Comparison", "GridRun", "run_compare", "run_method_grid", "summary_table", "format_table"]
