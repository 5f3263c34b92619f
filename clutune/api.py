"""clutune's Python API: the four commands as functions, and what they return as DataFrames.

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

Each call starts a local Ray when none is running in the process and shuts it down when it returns; a Ray the
caller started (``ray.init``) is used and left running.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clutune.core.config import ConfigSource, Overrides
from clutune.platform.run.log import Log, print_line
from clutune.platform.run.runtime import set_ray_env

if TYPE_CHECKING:  # the platform modules import Ray and MLflow: only when a command runs
    from clutune.platform.reports.aggregate import Aggregate
    from clutune.platform.run.compare import CompareResult, GridOptions
    from clutune.platform.run.single_run import RunResult
    from clutune.platform.run.study import StudyResult
    from clutune.platform.search.sweep import SweepResult


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
    from clutune.platform.run.single_run import RunOptions, run_single

    options = RunOptions(method, str(out), seed, save_predictions, overwrite, tracking_uri, tracking)
    return run_single(config, options, overrides, log)


def compare(
    config: ConfigSource,
    *,
    methods: Sequence[str],
    out: str | Path,
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
    set_ray_env(address)
    from clutune.platform.run.compare import run_compare
    from clutune.platform.run.launch import Cluster

    options = _grid_options(methods, seeds, out, overwrite, resume, concurrency)
    return run_compare(config, options, overrides, Cluster(address, num_cpus, tracking_uri, tracking), log)


def study(
    config: ConfigSource,
    *,
    methods: Sequence[str] = ("ugclu", "er", "derpp", "sfron", "finetune"),
    out: str | Path,
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
    """A long-stream stability study (curves per request, drift slopes): ``clutune study``."""
    set_ray_env(address)
    from clutune.platform.run.launch import Cluster
    from clutune.platform.run.study import run_study

    options = _grid_options(methods, seeds, out, overwrite, resume, concurrency)
    return run_study(config, options, overrides, Cluster(address, num_cpus, tracking_uri, tracking), log)


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
    set_ray_env(address)
    from clutune.core.config import with_override
    from clutune.platform.run.launch import Cluster
    from clutune.platform.search.sweep import SweepOptions, run_sweep

    if scheduler is not None:
        overrides = with_override(overrides, "sweep.scheduler", scheduler)

    options = SweepOptions(method, trials, None if space is None else str(space), concurrency, resume, seed)
    return run_sweep(config, options, overrides, Cluster(address, num_cpus, tracking_uri, tracking), log)


def aggregate(folders: Sequence[str | Path], *, out: str | Path | None = None) -> Aggregate:
    """The interquartile mean of each method's KL to the oracle over the retrain noise floor, across the (scenario,
    seed) runs of several compare or study folders, with stratified bootstrap intervals: ``clutune aggregate``.
    With ``out`` the table, the scores and the performance profile are also written there."""
    from clutune.platform.reports.aggregate import aggregate as compute
    from clutune.platform.reports.aggregate import write_aggregate

    paths = [Path(f) for f in folders]
    return compute(paths) if out is None else write_aggregate(paths, Path(out))


def _grid_options(
    methods: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    overwrite: bool,
    resume: bool,
    concurrency: int | None,
) -> GridOptions:
    """compare and study write to a folder (a shared mount on a cluster) that every node writes checkpoints to."""
    from clutune.core import storage
    from clutune.errors import UserError
    from clutune.platform.run.compare import GridOptions

    if isinstance(methods, str) or isinstance(seeds, (str, int)):
        raise UserError("methods and seeds are lists, e.g. methods=['er', 'ugclu'], seeds=[0, 1]")
    location = str(out)
    storage.check_location(location, "--out")
    if storage.is_remote(location):
        raise UserError(f"--out {location}: compare and study write to a folder (a shared mount), not {location}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise UserError(f"seeds {list(seeds)!r}: expected integers")
    folder = Path(storage.local_path(location))
    return GridOptions(list(methods), list(seeds), folder, overwrite, resume, concurrency)


__all__ = ["aggregate", "compare", "run", "study", "sweep"]
