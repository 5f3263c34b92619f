"""clutune's Python API: every command as a function, and what it returns as DataFrames.

Every ``clutune`` command is a thin layer over these functions, so a notebook gets exactly what the shell
gets: the same validation (one :class:`~clutune.errors.UserError` before anything is created), the same
folders and MLflow record, the same resume.

``config`` is a :class:`~clutune.core.config.Config`, a mapping shaped like a config file, a YAML file path or a
preset name. ``overrides`` maps dotted config keys (``"oracle.epochs"``) or bare hyperparameter names
(``"buffer_size"``) to values, as ``--set`` does on the command line. Options are keywords named like the
commands' flags::

    import clutune

    result = clutune.compare("digits-agnostic-class", methods=["er", "ugclu"], seeds=[0, 1], out="runs/c",
                             overrides={"oracle.epochs": 30, "buffer_size": 200})
    result.table          # mean ± std over seeds per method (also runs/c/comparison.md)
    result.rows           # one row per (run, request): the results schema

    found = clutune.sweep("digits-agnostic-class", method="ugclu", trials=20,
                          overrides={"sweep.objectives": ["kl_oracle_all", "avg_gap"]})
    found.trials, found.pareto, found.confirmed

    server = clutune.ui(port=5000)      # the MLflow UI, answering when the call returns
    server.address
    server.stop()

Each call that runs on Ray starts a local Ray when none is running in the process and shuts it down when it
returns; a Ray the caller started (``ray.init``) is used and left running.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clutune.core.config import ConfigSource, Overrides
from clutune.errors import UserError
from clutune.guards.arguments import (
    check_bool,
    check_choice,
    check_config,
    check_int,
    check_log,
    check_names,
    check_optional_int,
    check_optional_path,
    check_optional_seed,
    check_optional_str,
    check_overrides,
    check_path,
    check_paths,
    check_seed,
    check_seeds,
    check_str,
)
from clutune.platform.run.log import Log, print_line
from clutune.platform.run.runtime import set_ray_env

if TYPE_CHECKING:  # the platform modules import Ray and MLflow: only when a command runs
    import pandas as pd

    from clutune.clu.methods import Method
    from clutune.platform.record.sync import Synced
    from clutune.platform.reports.aggregate import Aggregate
    from clutune.platform.reports.serve import Server
    from clutune.platform.run.compare import CompareResult
    from clutune.platform.run.oracles import OracleCacheState
    from clutune.platform.run.single_run import RunResult
    from clutune.platform.run.study import StudyResult
    from clutune.platform.search.sweep import SweepResult
    from clutune.plugins.check_method import MethodReport

PathLike = str | os.PathLike


def run(
    config: ConfigSource,
    *,
    method: str,
    out: str | Path,
    seed: int | None = None,
    save_predictions: bool = False,
    overwrite: bool = False,
    overrides: Overrides = None,
    tracking_uri: str | None = None,
    tracking: bool = True,
    log: Log = print_line,
) -> RunResult:
    """One method through the scenario in this process (no Ray): ``clutune run``."""
    _check_command(config, overrides, log, tracking_uri, tracking)
    check_str("method", method)
    check_path("out", out)
    check_optional_seed("seed", seed)
    check_bool("save_predictions", save_predictions)
    check_bool("overwrite", overwrite)
    from clutune.platform.run.single_run import RunOptions, run_single

    options = RunOptions(method, str(out), seed, save_predictions, overwrite, tracking_uri, tracking)
    return run_single(config, options, overrides, log)


def compare(
    config: ConfigSource,
    *,
    methods: Sequence[str],
    out: PathLike,
    seeds: Sequence[int] = (0,),
    overrides: Overrides = None,
    overwrite: bool = False,
    resume: bool = False,
    concurrency: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    tracking_uri: str | None = None,
    tracking: bool = True,
    log: Log = print_line,
) -> CompareResult:
    """Several methods on the same scenario, seeds and oracles, in parallel on Ray: ``clutune compare``."""
    _check_command(config, overrides, log, tracking_uri, tracking)
    grid = _Grid(methods, seeds, out, overwrite, resume, concurrency, address, num_cpus, tracking_uri, tracking)
    return grid.run("compare", config, overrides, log)


def study(
    config: ConfigSource,
    *,
    methods: Sequence[str] = ("ugclu", "er", "derpp", "sfron", "finetune"),
    out: PathLike,
    seeds: Sequence[int] = (0,),
    overrides: Overrides = None,
    overwrite: bool = False,
    resume: bool = False,
    concurrency: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    tracking_uri: str | None = None,
    tracking: bool = True,
    log: Log = print_line,
) -> StudyResult:
    """A long-stream stability study (curves per request, drift slopes): ``clutune study``. It runs the grid
    ``compare`` runs, and reports it differently."""
    _check_command(config, overrides, log, tracking_uri, tracking)
    grid = _Grid(methods, seeds, out, overwrite, resume, concurrency, address, num_cpus, tracking_uri, tracking)
    return grid.run("study", config, overrides, log)


def sweep(
    config: ConfigSource,
    *,
    method: str,
    trials: int,
    space: str | Path | None = None,
    concurrency: int = 2,
    resume: bool = False,
    seed: int | None = None,
    scheduler: str | None = None,
    overrides: Overrides = None,
    address: str | None = None,
    num_cpus: int | None = None,
    tracking_uri: str | None = None,
    tracking: bool = True,
    log: Log = print_line,
) -> SweepResult:
    """Tune a method with Ray Tune and Optuna, oracles trained once: ``clutune sweep``. ``scheduler`` is
    ``"asha"`` or ``"pbt"`` (population-based training over the stream), the same as ``sweep.scheduler``."""
    _check_command(config, overrides, log, tracking_uri, tracking)
    check_str("method", method)
    check_int("trials", trials, minimum=1)
    check_optional_path("space", space)
    check_int("concurrency", concurrency, minimum=1)
    check_bool("resume", resume)
    check_optional_seed("seed", seed)
    if scheduler is not None:
        check_choice("scheduler", scheduler, ("asha", "pbt"))
    _check_cluster(address, num_cpus)
    set_ray_env(address)
    from clutune.core.config import with_override
    from clutune.platform.run.launch import Cluster
    from clutune.platform.search.sweep import SweepOptions, run_sweep

    if scheduler is not None:
        overrides = with_override(overrides, "sweep.scheduler", scheduler)

    options = SweepOptions(method, trials, None if space is None else str(space), concurrency, resume, seed)
    return run_sweep(config, options, overrides, Cluster(address, num_cpus, tracking_uri, tracking), log)


def aggregate(
    folders: Sequence[PathLike], *, out: PathLike | None = None, seeds: Sequence[int] | None = None
) -> Aggregate:
    """The interquartile mean of each method's KL to the oracle over the scenario's noise floor, across the
    (scenario, seed) runs of several compare or study folders, with stratified bootstrap intervals: ``clutune
    aggregate``. With ``out`` the table, the scores and the performance profile are also written there. ``seeds``
    counts only those seeds' runs, so folders run on different numbers of seeds aggregate on the ones they share."""
    check_paths("folders", folders)
    check_optional_path("out", out)
    if seeds is not None:
        check_seeds("seeds", seeds)
    from clutune.platform.reports.aggregate import aggregate as compute
    from clutune.platform.reports.aggregate import write_aggregate

    paths = [Path(f) for f in folders]
    return compute(paths, seeds=seeds) if out is None else write_aggregate(paths, Path(out), seeds=seeds)


def oracles(
    config: ConfigSource | None = None,
    *,
    overrides: Overrides = None,
    cache_dir: PathLike | None = None,
    prune: bool = False,
    max_age: float | None = None,
    max_size: str | int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    log: Log = print_line,
) -> OracleCacheState:
    """Train a scenario's missing oracles on Ray (``config``), prune the oracle cache (``prune=True`` with
    ``max_age`` in days and/or ``max_size``, ``"500M"`` or bytes), or describe a cache (``cache_dir`` alone):
    ``clutune oracles``. Training takes the oracle-cache lease every grid command takes, so a prune elsewhere
    spares what it trains. Returns the cache's state after the call and the keys it trained, removed or kept."""
    if config is not None:
        check_config(config)
    check_overrides(overrides)
    check_log(log)
    check_bool("prune", prune)
    check_optional_path("cache_dir", cache_dir)
    _check_cluster(address, num_cpus)
    set_ray_env(address)
    from clutune.core.config import load_config
    from clutune.platform.run.oracles import oracle_options, run_oracles

    limits = oracle_options(config is not None, bool(overrides), cache_dir is not None, prune, max_age, max_size)
    loaded = load_config(config, overrides) if config is not None else None
    folder = None if cache_dir is None else str(cache_dir)
    return run_oracles(loaded, folder, limits, address, num_cpus, log)


def report(
    source: PathLike,
    *,
    out: PathLike,
    tracking_uri: str | None = None,
    study_storage: str | None = None,
    log: Log = print_line,
) -> Path:
    """One self-contained HTML page (comparison table, plots, config) from a results folder, a sweep folder or an
    MLflow experiment name: ``clutune report``. Returns the page's path.

    A folder is read as untrusted: only files inside it, its record validated, and the study storage its record
    names is not opened unless given as ``study_storage`` (``log`` says so)."""
    check_path("source", source)
    check_path("out", out)
    check_optional_str("tracking_uri", tracking_uri)
    check_optional_str("study_storage", study_storage)
    check_log(log)
    from clutune.platform.reports.report import write_report

    return write_report(str(source), Path(out), tracking_uri, study_storage, log)


def export(experiment: str, *, out: PathLike, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every run of an MLflow experiment as one table in the results schema, written to ``out`` (a .parquet
    file): ``clutune export``. Returns the table."""
    check_str("experiment", experiment)
    check_path("out", out)
    check_optional_str("tracking_uri", tracking_uri)
    from clutune.platform.record.export import export_experiment

    return export_experiment(experiment, tracking_uri, Path(out))


def sync(source: PathLike, *, tracking_uri: str | None = None, log: Log = print_line) -> Synced:
    """Write to MLflow what a run, compare, study or sweep folder holds and MLflow misses, without duplicates:
    ``clutune sync``. Returns what it created.

    The folder is read as untrusted: only files inside it, its record validated whole before anything is
    written, and the store its record names is not opened unless given as ``tracking_uri`` (``log`` says so)."""
    check_path("source", source)
    check_optional_str("tracking_uri", tracking_uri)
    check_log(log)
    from clutune.platform.record.sync import sync_folder

    return sync_folder(Path(source), tracking_uri, log)


def check_method(method: str | type[Method], *, seed: int = 0) -> MethodReport:
    """Check that a method (a registered name, or a class before it is packaged) keeps clutune's guarantees on a
    tiny stream: ``clutune check-method``. A failed check is a row of the report (``report.passed`` is False),
    not an exception."""
    if not isinstance(method, (str, type)):
        raise UserError(f"method={method!r}: expected a method name or a Method class")
    if isinstance(method, str):
        check_str("method", method)
    check_seed("seed", seed)
    from clutune.plugins.check_method import check_method as run_checks

    return run_checks(method, seed=seed)


def ui(
    *,
    tracking_uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = 5000,
    browser: bool = True,
    log: Log = print_line,
) -> Server:
    """Serve the MLflow UI (bound to loopback unless ``host`` says otherwise) and return once it answers:
    ``clutune ui``. ``server.address`` is the runs table of the most recent experiment; ``browser=False`` is
    ``--no-browser``. ``server.wait()`` serves until Ctrl-C, SIGTERM or SIGHUP, ``server.stop()`` ends it."""
    check_optional_str("tracking_uri", tracking_uri)
    check_str("host", host)
    check_int("port", port)
    check_bool("browser", browser)
    check_log(log)
    from clutune.platform.reports.serve import serve_mlflow

    return serve_mlflow(tracking_uri, host, port, open_browser=browser, log=log)


def dashboard(
    sweep_dir: PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    study_storage: str | None = None,
    log: Log = print_line,
) -> Server:
    """Serve optuna-dashboard on a sweep's own Optuna study and return once it answers: ``clutune dashboard``.
    ``server.wait()`` serves until Ctrl-C, SIGTERM or SIGHUP, ``server.stop()`` ends it.

    The folder is read as untrusted: its journal is read only from inside it, and the study storage its record
    names is not opened unless given as ``study_storage``."""
    check_path("sweep_dir", sweep_dir)
    check_str("host", host)
    check_int("port", port)
    check_optional_str("study_storage", study_storage)
    check_log(log)
    from clutune.platform.reports.serve import serve_dashboard

    return serve_dashboard(Path(sweep_dir), host, port, study_storage, log=log)


def tracking_failures() -> list[str]:
    """The MLflow writes that failed during this process. Tracking fails soft (the work goes on, the files are
    written), so a caller reports these last; none when MLflow was never loaded."""
    tracking = sys.modules.get("clutune.platform.record.tracking")
    return tracking.tracking_failures() if tracking is not None else []


class _Grid:
    """The options compare and study share: both run a fixed (method, seed) grid on the engine and write to a
    folder (a shared mount on a cluster) that every node writes checkpoints to."""

    def __init__(
        self,
        methods: Sequence[str],
        seeds: Sequence[int],
        out: PathLike,
        overwrite: bool,
        resume: bool,
        concurrency: int | None,
        address: str | None,
        num_cpus: int | None,
        tracking_uri: str | None,
        tracking: bool,
    ) -> None:
        from clutune.core import storage

        check_names("methods", methods)
        check_seeds("seeds", seeds)
        check_path("out", out)
        check_bool("overwrite", overwrite)
        check_bool("resume", resume)
        check_optional_int("concurrency", concurrency, minimum=1)
        _check_cluster(address, num_cpus)
        location = os.fspath(out)
        storage.check_location(location, "--out")
        if storage.is_remote(location):
            raise UserError(f"--out {location}: compare and study write to a folder (a shared mount), not {location}")
        self.methods, self.seeds, self.folder = list(methods), list(seeds), Path(storage.local_path(location))
        self.overwrite, self.resume, self.concurrency = overwrite, resume, concurrency
        self.address, self.num_cpus, self.tracking_uri, self.tracking = address, num_cpus, tracking_uri, tracking

    def run(self, command: str, config: ConfigSource, overrides: Overrides, log: Log) -> Any:
        set_ray_env(self.address)
        from clutune.platform.run.compare import GridOptions, run_compare
        from clutune.platform.run.launch import Cluster
        from clutune.platform.run.study import run_study

        runner = {"compare": run_compare, "study": run_study}[command]
        options = GridOptions(self.methods, self.seeds, self.folder, self.overwrite, self.resume, self.concurrency)
        cluster = Cluster(self.address, self.num_cpus, self.tracking_uri, self.tracking)
        return runner(config, options, overrides, cluster, log)


def _check_command(config: object, overrides: object, log: object, tracking_uri: object, tracking: object) -> None:
    """The arguments every command that runs a config shares."""
    check_config(config)
    check_overrides(overrides)
    check_log(log)
    check_optional_str("tracking_uri", tracking_uri)
    check_bool("tracking", tracking)


def _check_cluster(address: object, num_cpus: object) -> None:
    check_optional_str("address", address)
    check_optional_int("num_cpus", num_cpus, minimum=1)


__all__ = [
    "aggregate",
    "check_method",
    "compare",
    "dashboard",
    "export",
    "oracles",
    "report",
    "run",
    "study",
    "sweep",
    "sync",
    "tracking_failures",
    "ui",
]
