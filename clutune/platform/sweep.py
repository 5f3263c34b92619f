"""``clutune sweep``: Ray Tune + OptunaSearch over a method's search space, oracles trained once, MLflow record.

Everything is validated (config, method, search space, objectives, scenario, data) before Ray starts. The
sweep folder ``<storage_path>/<config>-<method>`` holds Tune's experiment state and the Optuna journal, so
``--resume`` continues an interrupted sweep to its trial count without repeating finished trials.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from clutune.config import Config, bare_overrides, load_config
from clutune.errors import UserError
from clutune.experiment import method_hparams, prepare, validate_methods_section
from clutune.platform.oracle_pool import plan_oracles, submit_oracles
from clutune.platform.search_space import SearchSpace, default_space_path, load_space
from clutune.platform.tracking import MlflowCallback, SweepTracker, resolve_tracking_uri
from clutune.results import OBJECTIVE_METRICS, write_results
from clutune.trainables import clu_trainable, objective_name

_print = functools.partial(print, flush=True)


@dataclass
class SweepSummary:
    sweep_dir: Path
    parent_run_id: str
    tracking_uri: str
    oracles_total: int
    oracles_trained: int
    trials: pd.DataFrame
    best: dict[str, Any]
    pareto: pd.DataFrame | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def absolutize(config: Config) -> None:
    """Trials run in other processes (and machines): every local path must be absolute first."""
    if config.dataset.root and "://" not in config.dataset.root:
        config.dataset.root = str(Path(config.dataset.root).expanduser().resolve())
    if "://" not in config.oracle.cache_dir:
        config.oracle.cache_dir = str(Path(config.oracle.cache_dir).expanduser().resolve())
    if "://" not in config.sweep.storage_path:
        config.sweep.storage_path = str(Path(config.sweep.storage_path).expanduser().resolve())


def ensure_ray(address: str | None, num_cpus: int | None = None) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def _searcher(
    config: Config, space: SearchSpace, study_path: Path, name: str, trials: int, start: dict[str, Any]
) -> OptunaSearch:
    """TPE (several objectives too: MOTPE), its first trial at the method's current defaults, so a sweep starts
    from the known-good point and a short sweep still leaves TPE room after its random start-up trials."""
    sw = config.sweep
    metrics = [objective_name(m) for m in sw.objectives]
    if sw.sampler == "tpe":
        startup = max(2, min(10, trials // 3))
        sampler = optuna.samplers.TPESampler(seed=sw.sampler_seed, n_startup_trials=startup)
    else:
        sampler = optuna.samplers.RandomSampler(seed=sw.sampler_seed)
    if sw.study_storage:
        storage: Any = sw.study_storage
    else:
        study_path.parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(study_path)))
    single = len(metrics) == 1
    return OptunaSearch(
        space=space.distributions,
        metric=metrics[0] if single else metrics,
        mode="min" if single else ["min"] * len(metrics),
        sampler=sampler,
        study_name=name,
        storage=storage,
        points_to_evaluate=[start] if start else None,
    )


def pareto_front(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Completed trials not dominated on all (minimised) objectives."""
    done = frame.dropna(subset=columns)
    keep = []
    for i, row in done.iterrows():
        dominated = any(
            all(other[c] <= row[c] for c in columns) and any(other[c] < row[c] for c in columns)
            for j, other in done.iterrows()
            if j != i
        )
        if not dominated:
            keep.append(i)
    return done.loc[keep].sort_values(columns[0])


def run_sweep(
    config_path: str,
    method: str,
    trials: int,
    sets: list[str] | None = None,
    space_path: str | None = None,
    concurrency: int = 2,
    resume: bool = False,
    tracking_uri: str | None = None,
    seed: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    log: Any = _print,
) -> SweepSummary:
    t_start = time.perf_counter()
    config = load_config(config_path, sets)
    if seed is not None:
        config.seed = seed
    validate_methods_section(config)
    fixed = bare_overrides(sets)  # bare --set hyperparameters hold for every trial; the space samples the rest
    defaults = asdict(method_hparams(config, method, config.dataset.name, fixed))
    space = load_space(space_path or default_space_path(method), method)
    start = {
        k: defaults[k] for k in space.distributions if defaults.get(k) is not None and space.contains(k, defaults[k])
    }
    unknown = [m for m in config.sweep.objectives if m not in OBJECTIVE_METRICS]
    if unknown:
        raise UserError(
            f"config key 'sweep.objectives': unknown metric {unknown[0]!r}; known: {', '.join(OBJECTIVE_METRICS)}"
        )
    if trials < 1 or concurrency < 1:
        raise UserError("--trials and --concurrency must be at least 1")
    absolutize(config)
    name = f"{config.name}-{method}"
    sweep_dir = Path(config.sweep.storage_path) / name
    if resume and not tune.Tuner.can_restore(str(sweep_dir)):
        raise UserError(f"--resume: no sweep to resume at {sweep_dir}")
    if not resume and sweep_dir.exists():
        raise UserError(f"sweep folder {sweep_dir} exists: pass --resume to continue it, or remove it")
    prep = prepare(config)  # data and scenario checked here, before Ray starts
    uri = resolve_tracking_uri(tracking_uri)
    tracker = SweepTracker(uri, config.sweep.experiment or config.name, sweep_dir)

    ensure_ray(address, num_cpus)
    plan = plan_oracles(prep)
    log(
        f"oracles: {len(plan.owned)} distinct for {len(prep.scenario)} requests, "
        f"{len(plan.cached)} cached, training {len(plan.missing)} as Ray tasks"
    )
    refs = submit_oracles(prep, plan)
    context = {
        "config": config.as_dict(),
        "method": method,
        "seed": config.seed,
        "oracle_refs": [refs[k] for k in plan.key_of_request],
        "objectives": list(config.sweep.objectives),
        "fixed": fixed,
    }
    res = config.sweep.trial_resources
    trainable = tune.with_resources(
        tune.with_parameters(clu_trainable, context=context), {"cpu": res.cpu, "gpu": res.gpu}
    )
    parent = tracker.start_parent(
        name,
        config.as_dict(),
        space.raw,
        {"method": method, "trials": trials, "sweep_dir": str(sweep_dir), "fixed": fixed},
    )
    first = objective_name(config.sweep.objectives[0])
    callback = MlflowCallback(tracker, list(space.distributions), len(prep.scenario), first, log)
    if resume:
        log(f"resuming {sweep_dir}")
        tuner = tune.Tuner.restore(
            str(sweep_dir), trainable, resume_unfinished=True, resume_errored=True, param_space=None
        )
    else:
        scheduler = (
            ASHAScheduler(
                time_attr="requests_done",
                metric=first,
                mode="min",
                max_t=len(prep.scenario),
                grace_period=min(config.sweep.grace_period, len(prep.scenario)),
                reduction_factor=config.sweep.reduction_factor,
            )
            if config.sweep.asha
            else None
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=_searcher(config, space, sweep_dir / "optuna-journal.log", name, trials, start),
                scheduler=scheduler,
                num_samples=trials,
                max_concurrent_trials=concurrency,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=config.sweep.storage_path,
                callbacks=[callback],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=1),
                verbose=0,
            ),
        )
    if resume:
        tuner._local_tuner._run_config.callbacks = [callback]  # callbacks are not part of the saved state
    grid = tuner.fit()
    trained = sum(1 for k in plan.missing if not ray.get(refs[k]).cached)
    return _summarize(
        config, method, prep, grid, callback, tracker, sweep_dir, uri, parent, len(plan.owned), trained, t_start
    )


def _trial_tables(grid: Any, space_keys: list[str], objectives: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per trial (final objectives, params) and one row per (trial, request) in the results schema."""
    trials, requests = [], []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name
        status = "ERROR" if result.error else ("DIVERGED" if metrics.get("diverged") else "OK")
        row = {"trial_id": trial_id, "status": status}
        row["requests_done"] = metrics.get("requests_done", 0)
        for m in objectives:
            row[objective_name(m)] = metrics.get(objective_name(m), math.nan)
        for k in space_keys:
            row[k] = result.config.get(k)
        trials.append(row)
        frame = result.metrics_dataframe
        if frame is not None and len(frame):
            frame = frame.copy()
            frame["trial_id"] = trial_id
            requests.append(frame)
    per_request = pd.concat(requests, ignore_index=True) if requests else pd.DataFrame()
    return pd.DataFrame(trials), per_request


def _plot(per_request: pd.DataFrame, metric: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for trial_id, frame in per_request.groupby("trial_id"):
        ax.plot(frame["request"], frame[metric], marker="o", lw=1, label=str(trial_id)[-8:])
    ax.set_xlabel("request")
    ax.set_ylabel(metric)
    ax.set_yscale("log")
    ax.set_title(f"{metric} per request, one line per trial")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _summarize(
    config: Config,
    method: str,
    prep: Any,
    grid: Any,
    callback: MlflowCallback,
    tracker: SweepTracker,
    sweep_dir: Path,
    uri: str,
    parent: str,
    oracles_total: int,
    oracles_trained: int,
    t_start: float,
) -> SweepSummary:
    objectives = list(config.sweep.objectives)
    columns = [objective_name(m) for m in objectives]
    trials, per_request = _trial_tables(grid, callback.space_keys, objectives)
    complete = trials[(trials["requests_done"] == len(prep.scenario)) & (trials["status"] == "OK")]
    best: dict[str, Any] = {}
    pareto = None
    if len(complete):
        top = complete.sort_values(columns[0]).iloc[0]
        best = {
            "best_trial": top["trial_id"],
            "best_params": {k: top[k] for k in callback.space_keys},
            "best_metrics": {c: top[c] for c in columns},
        }
        if len(columns) > 1:
            pareto = pareto_front(complete, columns)
    if "diverged" in per_request:  # the closing report of a diverged trial is not a request's result
        per_request = per_request[per_request["diverged"].isna()].drop(columns=["diverged", "error"])
    if len(per_request):
        keep = [c for c in per_request.columns if not c.startswith(("config/", "time_", "iterations_"))]
        write_results(sweep_dir / "results.parquet", per_request[keep].to_dict("records"))
    tables = {"trials.csv": trials}
    if pareto is not None:
        tables["pareto.csv"] = pareto
    plots = {"kl_oracle_all_per_request.png": _plot(per_request, "kl_oracle_all")} if len(per_request) else {}
    tracker.finish(best, tables, plots)
    trials.to_csv(sweep_dir / "trials.csv", index=False)
    return SweepSummary(
        sweep_dir=sweep_dir,
        parent_run_id=parent,
        tracking_uri=uri,
        oracles_total=oracles_total,
        oracles_trained=oracles_trained,
        trials=trials,
        best=best,
        pareto=pareto,
        seconds=time.perf_counter() - t_start,
    )
