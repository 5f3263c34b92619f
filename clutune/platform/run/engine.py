"""The one engine that runs grids of configurations: sweeps, comparisons and studies.

Each command describes what to run (a searcher that samples hyperparameters, or a fixed grid of (method,
seed) pairs) and the engine does the rest the same way for all of them: oracles planned and trained once as
Ray tasks, the Tune trainable with per-request reports and checkpoints, resume after a killed driver, the
MLflow parent/child record (written by the driver only, on one background thread), results appended per
request and compacted at the end, each trial's figures drawn as it ends, and progress with an estimate of the
time left.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback
from ray.tune.stopper import CombinedStopper, Stopper

from clutune.core import storage
from clutune.core.config import Config
from clutune.core.experiment import Prepared, hparam_columns, hparams_source, method_hparams, no_tuned_defaults_notice
from clutune.core.results import ResultStream, compact, dedupe, read_parts
from clutune.errors import RunFailed, UserError
from clutune.platform.cluster.oracle_pool import OraclePlan, leased_plan, submit_oracles
from clutune.platform.cluster.ray_address import joins_cluster, local_head
from clutune.platform.cluster.tune_storage import settle, tune_storage
from clutune.platform.internals import check_ray_version, reinstall_callbacks
from clutune.platform.record.publish import attach_runs, draw_runs, publish_runs
from clutune.platform.record.tracking import SweepTracker
from clutune.platform.run.recurring import raise_recurring
from clutune.platform.run.trainable import clu_trainable, seed_mean, trial_setup


def absolutize(config: Config) -> None:
    """Trials run in other processes (and machines): every local path must be absolute (``file://`` becomes a
    plain path), and every URI one that :mod:`clutune.core.storage` can write, before any work starts."""
    for key in ("root", "path"):  # a data folder, or the npz reader's file
        value = getattr(config.dataset, key)
        if value and "://" not in value:
            setattr(config.dataset, key, str(Path(value).expanduser().resolve()))
    storage.check_location(config.oracle.cache_dir, "config key 'oracle.cache_dir'")
    storage.check_location(config.sweep.storage_path, "config key 'sweep.storage_path'")
    config.oracle.cache_dir = storage.local_path(config.oracle.cache_dir)
    config.sweep.storage_path = storage.local_path(config.sweep.storage_path)


# A local Ray started by a command: no prestarted idle workers. Ray would start one per CPU for tasks that may
# never come (cached oracles) and keep them polling for the whole run; without them ray.init returns 1.5 s
# sooner and a trial's worker starts when it is asked for (half a second).
LOCAL_RAY_SYSTEM_CONFIG = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}


def ensure_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, as in a Ray job), or start a local Ray: only then
    are its system settings ours to choose (Ray refuses them when joining)."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        return
    if joins_cluster(None):  # as ray.init() decides: it joins, and Ray refuses system settings and CPU counts then
        if not os.environ.get("RAY_ADDRESS"):
            ignored = f"; --num-cpus {num_cpus} does not apply to it" if num_cpus else ""
            print(f"joining the Ray cluster already running on this machine at {local_head()}{ignored}", flush=True)
        ray.init(include_dashboard=False, log_to_driver=False)
        return
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _system_config=LOCAL_RAY_SYSTEM_CONFIG)


@dataclass
class Oracles:
    """The command's oracles: planned once, submitted once, shared by every grid it runs."""

    plan: OraclePlan
    refs: dict[str, ray.ObjectRef]

    @property
    def per_request(self) -> list[list[ray.ObjectRef] | None]:
        """Per request, the refs of its oracle members (member 0 first; one for ``oracle.ensemble`` 1), or None."""
        return self.plan.member_refs(self.refs)

    @property
    def floor_per_request(self) -> list[list[ray.ObjectRef]]:
        """Per request, the refs of KLoM's floor models (empty where none were planned)."""
        return self.plan.floor_refs(self.refs)

    def trained(self) -> int:
        return sum(1 for k in self.plan.missing if not ray.get(self.refs[k]).cached)


@contextlib.contextmanager
def leased_oracles(prep: Prepared, log: Callable[[str], None], floor: int = 0) -> Iterator[Oracles]:
    """Plan the command's oracles (with ``floor`` KLoM floor models per scored request), lease their cache entries
    (``clutune oracles --prune`` keeps away from them while the command runs), then submit the missing ones as Ray
    tasks."""
    with leased_plan(prep, floor) as plan:
        needed = sum(1 for k in plan.key_of_request if k is not None)
        log(
            f"oracles ({prep.config.oracle.policy} policy): {len(plan.owned)} distinct for {needed} of "
            f"{len(prep.scenario)} requests, {len(plan.cached)} cached, training {len(plan.missing)} as Ray tasks"
        )
        yield Oracles(plan, submit_oracles(prep, plan))


@dataclass
class Grid:
    """What to run: a fixed ``param_space`` (grid) or a ``search_alg`` with ``num_samples`` trials."""

    name: str  # Tune experiment folder name under storage_path
    storage_path: str
    out: Path  # folder for the results stream and results.parquet
    context: dict[str, Any]  # trainable context: config, method, seeds, fixed, objectives, robust, ...
    param_keys: list[str]  # trial config keys recorded as MLflow params
    role: str = "trial"  # MLflow child tag clutune.role
    param_space: dict[str, Any] | None = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    concurrency: int = 2
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1.0, "gpu": 0.0})
    max_failures: int = 1
    reuse_actors: bool = True  # see SweepConfig.reuse_actors
    stop: Any = None  # a Tune experiment stopper (a sweep that ends once converged)
    # Checkpoints Tune keeps per trial. A population keeps two: a member that copies another's state restores the
    # source's checkpoint of the last decision after the source may already have written the next one.
    checkpoints_kept: int = 1
    # A stability check counts divergences instead of refusing the grid (a confirmation's neighbours may diverge).
    tolerate_diverged: bool = False


class StopOnRecurringFailure(Stopper):
    """Ends the whole grid at the first trial that failed for good: the other trials run the same method code."""

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if result.get("failed"):
            self.failed = True
        return self.failed

    def stop_all(self) -> bool:
        return self.failed


class Background:
    """Driver work done in order on one background thread, its errors re-raised when drained.

    A trial waits in ``tune.report`` until the driver has handled its result, so work done there would sit on
    every request's critical path. The engine keeps two queues. Records (results stream, MLflow) are drained at
    every trial checkpoint (``EngineCallback.on_checkpoint``: a resumed run continues from the last one Tune
    saved, so every request it will not repeat must be on record by then), when a trial ends and when the grid
    ends. Figures (a second of CPU per trial, which a resumed run draws again) are drained only when the grid
    ends, so no checkpoint ever waits for one."""

    def __init__(self, name: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.pending: list[Future] = []
        self.lock = threading.Lock()  # the figure thread queues attachments while the loop drains records

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with self.lock:
            self.pending.append(self.pool.submit(fn, *args))

    def drain(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self.pool.shutdown()


class EngineCallback(tune.Callback):
    """Driver side of every trial event: results stream, MLflow child runs, progress with time left."""

    def __init__(
        self,
        grid: Grid,
        tracker: SweepTracker,
        config: Config,
        n_requests: int,
        total_trials: int,
        log: Callable[[str], None],
    ) -> None:
        self.grid = grid
        self.config = config
        self.tracker = tracker
        self.n_requests = n_requests
        self.total_trials = total_trials
        self.log = log
        self.stream = ResultStream(grid.out)
        self.writer = Background("clutune-records")  # the only user of stream and tracker until the grid ends
        self.figures = Background("clutune-figures")
        self.objective = f"objective_{grid.context['objectives'][0]}"
        self.started: set[str] = set()  # trials whose MLflow child this driver has opened (or reopened)
        self.drawn: set[str] = set()  # trials whose per-run figures this driver has drawn and attached
        self.done = 0
        self.requests_seen = 0
        self.t0 = time.perf_counter()
        self.last_print = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config (with callbacks) into the experiment folder; database clients and open
        # files do not belong there. A resumed run installs a fresh callback.
        return {}

    def get_state(self) -> None:
        """Tune is saving its snapshot: every record queued so far is written too."""
        self.writer.drain()

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        """A trial checkpoint is about to become what a resumed run continues from (Tune writes its snapshot
        before it asks callbacks for their state), so every request up to it must be on record now: rows that
        were only queued would never be reported again."""
        self.writer.drain()

    def _open(self, trial: Any) -> None:
        """Create the trial's child run, or mark a known one RUNNING again (a resumed or restarted trial). It
        is named for what it runs (``<method>-s<seed>``; a sweep trial ``<trial>-s<seeds>``, a confirmation
        ``<trial>-s<seed>``) and carries the run's effective hyperparameters as ``hp.*`` params with their source
        (``hp.source``: a tuned-defaults file or the class defaults), as the rows carry them in ``hp_*``."""
        params = {k: trial.config[k] for k in self.grid.param_keys if k in trial.config}
        method, seeds, overrides = trial_setup(trial.config, self.grid.context)
        hparams = method_hparams(self.config, method, self.config.dataset.name, overrides)
        params.update({f"hp.{k[3:]}": v for k, v in hparam_columns(hparams).items()})
        params["hp.source"] = hparams_source(method, self.config.dataset.name)
        who = trial.config.get("candidate") or (method if "method" in trial.config else trial.trial_id)
        name = f"{who}-s{'+'.join(str(s) for s in seeds)}"
        self.writer.submit(self.tracker.child, trial.trial_id, name, params, self.grid.role)
        self.started.add(trial.trial_id)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        # Once per trial and driver, not per result: reopening a run that is already RUNNING is an MLflow write.
        if trial.trial_id not in self.started:
            self._open(trial)
        rows = result.pop("rows", [])
        self.writer.submit(self.stream.append, trial.trial_id, rows)
        if "diverged" not in result and "failed" not in result:  # those end a trial having measured no request
            self.writer.submit(self._log_request, trial.trial_id, rows, dict(result))
        self.requests_seen += 1
        self._progress(trial, result)

    def _log_request(self, trial_id: str, rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
        """On the writer thread: the request's MLflow step, every metric as its mean over the trial's seeds next
        to the objectives the trial reported."""
        self.tracker.log_request(trial_id, {**seed_mean(rows), **result})

    def _progress(self, trial: Any, result: dict) -> None:
        now = time.perf_counter()
        k = int(result.get("requests_done", 0))
        if now - self.last_print < 2.0 and k not in (1, self.n_requests):
            return
        self.last_print = now
        total = self.total_trials * self.n_requests
        elapsed = now - self.t0
        eta = elapsed / self.requests_seen * max(0, total - self.requests_seen)
        self.log(
            f"  [{self.requests_seen}/{total} requests, ~{eta / 60:.1f} min left] {trial.config.get('method', '')} "
            f"trial {trial.trial_id} request {k}/{self.n_requests} {result.get('kind', ''):<7} "
            f"{self.objective}={result.get(self.objective, float('nan')):.4g}"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        diverged = bool(last.get("diverged") or last.get("failed"))
        # The snapshot that records the trial as finished may come next: its records are closed first, and only
        # the figures (which a resumed run draws again) are left to the background.
        self.writer.drain()
        self._end(trial.trial_id, diverged, last.get("error"), "clutune.failed" if last.get("failed") else None)
        self.figures.submit(self._draw_ended, trial.trial_id)
        self.done += 1
        steps = last.get("requests_done", 0)
        how = "finished" if steps == self.n_requests else f"stopped by ASHA after {steps} requests"
        if diverged:
            how = f"{'failed' if last.get('failed') else 'diverged'} at request {last.get('request')}"
        self.log(f"trial {trial.trial_id} {how} ({self.done} done): {self.objective}={last.get(self.objective)}")

    def _end(self, trial_id: str, diverged: bool, error: str | None, tag: str | None = None) -> None:
        """Close the trial's stream part and its child run (FAILED with the divergence or failure, as ``tag``)."""
        self.stream.close(trial_id)
        if diverged:
            self.tracker.client.set_tag(self.tracker.children[trial_id], tag or "clutune.diverged", error)
        self.tracker.end_child(trial_id, "FAILED" if diverged else "FINISHED")

    def _draw_ended(self, trial_id: str) -> None:
        """On the figure thread: the ended trial's rows read back from its closed stream parts, drawn there, and
        attached through the record writer (the only MLflow client user)."""
        rows = pd.DataFrame(dedupe(read_parts(self.grid.out, trial_id)))
        if len(rows):
            self.writer.submit(attach_runs, self.tracker, draw_runs(self.grid.out, rows))
        self.drawn.add(trial_id)

    def draw_remaining(self, rows: list[dict[str, Any]]) -> None:
        """Figures of the trials this driver did not see end: those finished before a resume, or failed."""
        frame = pd.DataFrame(rows)
        if "trial_id" not in frame:
            return
        for trial_id, trial_rows in frame.groupby("trial_id", sort=True):
            if trial_id not in self.drawn:
                publish_runs(self.tracker, self.grid.out, trial_rows)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.writer.drain()
        self.tracker.end_child(trial.trial_id, "FAILED")
        self.log(f"trial {trial.trial_id} failed: {trial.error_file}")


def execute(grid: Grid, prep: Prepared, tracker: SweepTracker, resume: bool, log: Callable[[str], None]) -> Any:
    """Run (or resume) ``grid`` to completion; returns Tune's ResultGrid. Rows end in ``grid.out``."""
    check_ray_version()  # tune_storage relies on the order Tune 2.60 saves and deletes in
    storage_path, storage_fs = tune_storage(grid.storage_path)
    folder = storage.join(storage_path, grid.name)  # a path on storage_fs
    context = {**grid.context, "margins_out": str(grid.out)}  # where trials write margins (clutune.core.margins)
    trainable = tune.with_resources(tune.with_parameters(clu_trainable, context=context), grid.resources)
    total = grid_size(grid.param_space) if grid.search_alg is None else grid.num_samples
    callback = EngineCallback(grid, tracker, prep.config, len(prep.scenario), total, log)
    if grid.role != "confirm":
        for method in grid_methods(grid):
            notice = no_tuned_defaults_notice(method, prep.config.dataset.name)
            if notice:
                log(notice)
    callbacks = [callback, CSVLoggerCallback()]
    if resume and tune.Tuner.can_restore(folder, storage_filesystem=storage_fs):
        log(f"resuming {storage.join(grid.storage_path, grid.name)}")
        tuner = tune.Tuner.restore(
            folder, trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=storage_fs
        )
        reinstall_callbacks(tuner, callbacks)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=grid.param_space,
            tune_config=tune.TuneConfig(
                search_alg=grid.search_alg,
                scheduler=grid.scheduler,
                num_samples=grid.num_samples if grid.search_alg is not None else 1,
                max_concurrent_trials=grid.concurrency,
                reuse_actors=grid.reuse_actors,
            ),
            run_config=tune.RunConfig(
                name=grid.name,
                storage_path=storage_path,
                storage_filesystem=storage_fs,
                callbacks=callbacks,
                # One kept outside PBT: Tune then snapshots its experiment state at every trial checkpoint, so a
                # resumed trial never reports a request again that Optuna's journal already holds a verdict past.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=grid.checkpoints_kept),
                # max_failures restarts a trial whose worker or node died; a failure the method itself would repeat
                # ends as a result instead (trainable.py), and the stopper ends the grid at the first one.
                failure_config=tune.FailureConfig(max_failures=grid.max_failures),
                stop=CombinedStopper(*(s for s in (grid.stop, StopOnRecurringFailure()) if s is not None)),
                verbose=0,
            ),
        )
    try:
        results = tuner.fit()
        settle(folder, results)  # checkpoints no result names: superseded ones, and a killed driver's spares
    finally:
        try:
            callback.figures.close()  # first: its last attachments go through the writer
        finally:
            try:
                callback.writer.close()
            finally:
                callback.stream.close()
                rows = compact(grid.out)
    callback.draw_remaining(rows)
    raise_recurring(results)  # before anything summarises a grid that a method bug cut short
    if grid.search_alg is None:  # a fixed grid; a searcher's (or PBT population's) trials may fail alone
        require_complete(results, grid.out, grid.tolerate_diverged, prep.config.dataset.name)
    return results


def grid_methods(grid: Grid) -> list[str]:
    """The methods a grid runs: its ``method`` grid values (compare, study), else the context's one method."""
    values = (grid.param_space or {}).get("method")
    if isinstance(values, dict) and "grid_search" in values:
        return list(dict.fromkeys(values["grid_search"]))
    return [grid.context["method"]] if grid.context.get("method") else []


def require_complete(results: Any, out: Path, tolerate_diverged: bool = False, dataset: str | None = None) -> None:
    """A fixed grid (compare, study, confirmation) is a table with a row per (run, request): one with a run
    missing, or a run that diverged (its rows stop at the divergence), is refused instead of summarised. A
    sweep's errored trial is one of its results (Optuna records it failed), so sweeps do not come here; a
    confirmation counts its divergences (``tolerate_diverged``)."""
    failed = [r for r in results if r.error is not None]
    diverged = [r for r in results if r.error is None and (r.metrics or {}).get("diverged") and not tolerate_diverged]
    if diverged and not failed:  # a finished trial: --resume has nothing to continue, so it is not offered
        first, metrics = diverged[0], diverged[0].metrics
        what = ", ".join(f"{k} {v}" for k, v in sorted((first.config or {}).items())) or first.path
        method = (first.config or {}).get("method")
        untuned = dataset is not None and method and no_tuned_defaults_notice(method, dataset)
        hint = (
            f"; {method} ran on its class defaults (no tuned defaults for dataset {dataset}): "
            "`clutune sweep` tunes them"
        )
        raise RunFailed(
            f"{len(diverged)} of {len(results)} runs diverged, first {what} at request {metrics.get('request')}: "
            f"{metrics.get('error')}; the grid is incomplete and is not summarised (its rows are in {out})"
            + (hint if untuned else "")
        )
    if not failed:
        return
    first = failed[0]
    lines = [line for line in str(first.error).splitlines() if line.strip()]
    what = ", ".join(f"{k} {v}" for k, v in sorted((first.config or {}).items())) or first.path
    cause = lines[-1] if lines else "no message"
    raise RunFailed(
        f"{len(failed)} of {len(results)} runs failed, first {what}: {cause}; "
        f"the requests they finished are kept in {out}, rerun with --resume to continue them"
    )


def check_resumable(location: str, missing: str) -> None:
    """Before any work: a one-line error (``missing``) when there is no Tune experiment at ``location``, and a
    refusal when its state is unreadable. Tune would log that error and start the grid over under new trial ids,
    recording every row and MLflow run a second time next to the first."""
    path, fs = tune_storage(location)
    if not tune.Tuner.can_restore(path, storage_filesystem=fs):
        raise UserError(missing)
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    states = sorted(f.path for f in found if fnmatch.fnmatch(f.base_name, "experiment_state-*.json"))
    try:
        with fs.open_input_stream(states[-1]) as f:
            json.loads(f.read())
    except (ValueError, OSError) as e:
        raise UserError(
            f"--resume: Tune's experiment state {states[-1]} is unreadable ({str(e).splitlines()[0]}); "
            "start over with --overwrite"
        ) from None


def grid_size(param_space: dict[str, Any]) -> int:
    total = 1
    for value in param_space.values():
        if isinstance(value, dict) and "grid_search" in value:
            total *= len(value["grid_search"])
    return total


__all__ = [
    "Grid",
    "Oracles",
    "absolutize",
    "check_resumable",
    "ensure_ray",
    "execute",
    "leased_oracles",
    "require_complete",
]
