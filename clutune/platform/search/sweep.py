"""``clutune sweep``: Ray Tune + OptunaSearch over a method's search space, oracles trained once, MLflow record.

Everything is validated (config, method, search space, objectives, scenario, data) before Ray starts. The
sweep folder ``<storage_path>/<config>-<method>`` holds Tune's experiment state and the Optuna journal, so
``--resume`` continues an interrupted sweep to its trial count without repeating finished trials.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from clutune.core import storage
from clutune.core.config import Config, ConfigSource, Overrides, bare_overrides, load_config
from clutune.core.experiment import method_hparams, validate_methods_section
from clutune.core.results import OBJECTIVE_METRICS
from clutune.errors import UserError
from clutune.guards.folder_lock import check_unlocked, folder_lock
from clutune.guards.seeds import check_seed_option
from clutune.platform.internals import StoppedIsPruned
from clutune.platform.record.publish import publish_sweep
from clutune.platform.record.tracking import SweepTracker
from clutune.platform.run.engine import Grid, absolutize, check_resumable, execute
from clutune.platform.run.launch import Cluster, prepare_command, session
from clutune.platform.run.log import Log, print_line
from clutune.platform.run.trainable import objective_name
from clutune.platform.search import convergence, pbt
from clutune.platform.search.objective_check import check_objectives
from clutune.platform.search.samplers import make_sampler
from clutune.platform.search.search_space import SearchSpace, default_space_path, load_space, start_point


@dataclass
class SweepResult:
    """What ``clutune.sweep`` returns: the trials (one row each), the Pareto front (several objectives), the values
    confirmed on fresh seeds, the convergence curve with its verdict, and the best trial."""

    sweep_dir: Path  # the driver's folder: the sweep folder itself, or its local working copy (see _driver_folder)
    location: str  # the sweep folder: a path or a URI
    parent_run_id: str
    tracking_uri: str
    oracles_total: int
    oracles_trained: int
    trials: pd.DataFrame
    best: dict[str, Any]
    pareto: pd.DataFrame | None = None
    confirmed: pd.DataFrame | None = None
    convergence: pd.DataFrame | None = None  # best-so-far or hypervolume per finished trial (convergence.csv)
    converged: bool = False  # clutune.platform.search.convergence's one rule, over the complete trials
    verdict: str = ""  # that rule's line, as the sweep printed it
    seconds: float = 0.0


def _searcher(
    config: Config,
    space: SearchSpace,
    study_path: Path,
    name: str,
    trials: int,
    start: dict[str, Any],
    keys: list[str],
    n_requests: int,
) -> StoppedIsPruned:
    """``sweep.sampler`` (clutune/platform/search/samplers.py), its first trial at the method's current defaults, so a
    sweep starts from the known-good point and a short sweep still leaves the sampler room after its random
    start-up trials. A trial stopped before the last request is told to Optuna as pruned, not complete."""
    sw = config.sweep
    metrics = [objective_name(m) for m in sw.objectives]
    sampler = make_sampler(sw.sampler, sw.sampler_seed, trials)
    if sw.study_storage:
        storage: Any = sw.study_storage
    else:
        study_path.parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(study_path)))
    single = len(metrics) == 1
    return StoppedIsPruned(
        n_requests=n_requests,
        space={k: space.distributions[k] for k in keys},
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


@dataclass(frozen=True)
class SweepOptions:
    """What to tune and how long: the sweep's own options, named like its flags."""

    method: str
    trials: int
    space: str | None = None  # search space YAML; None: the method's own
    concurrency: int = 2
    resume: bool = False
    seed: int | None = None  # the run seed of every trial; None: the config's sweep.seeds


def run_sweep(
    config: ConfigSource,
    options: SweepOptions,
    overrides: Overrides = None,
    cluster: Cluster | None = None,
    log: Log = print_line,
) -> SweepResult:
    """``clutune sweep``: every input checked, then the search, its front, its confirmation and its record."""
    t_start = time.perf_counter()
    cluster = cluster or Cluster()
    method, trials, concurrency, resume = options.method, options.trials, options.concurrency, options.resume
    config = load_config(config, overrides)
    if options.seed is not None:
        config.sweep.seeds = [check_seed_option(options.seed, "--seed")]
    validate_methods_section(config)
    fixed = bare_overrides(overrides)  # bare hyperparameters hold for every trial; the space samples the rest
    defaults = asdict(method_hparams(config, method, config.dataset.name, fixed))
    space = load_space(options.space or default_space_path(method), method)
    space_keys = [k for k in space.distributions if k not in fixed]
    start, start_line = start_point(space, space_keys, defaults)
    if config.sweep.start == "sampler":
        start, start_line = {}, "first trial: drawn by the sampler (sweep.start: sampler)"
    unknown = [m for m in config.sweep.objectives if m not in OBJECTIVE_METRICS]
    if unknown:
        raise UserError(
            f"config key 'sweep.objectives': unknown metric {unknown[0]!r}; known: {', '.join(OBJECTIVE_METRICS)}"
        )
    if trials < 1 or concurrency < 1:
        raise UserError("--trials and --concurrency must be at least 1")
    absolutize(config)
    name = f"{config.name}-{method}"
    sweep_uri = storage.join(config.sweep.storage_path, name)
    if not storage.is_remote(sweep_uri):
        check_unlocked(Path(sweep_uri))  # before the folder's state is read: another sweep may be writing it
    if resume:
        check_resumable(sweep_uri, f"--resume: no sweep to resume at {sweep_uri}")
    if not resume and storage.exists(sweep_uri):
        raise UserError(f"sweep folder {sweep_uri} exists: pass --resume to continue it, or remove it")
    prep = prepare_command(config, cluster)  # data and scenario checked here, before anything is created
    sw = config.sweep
    kinds = [r.kind for r in prep.scenario.requests]
    population = sw.scheduler == "pbt"
    if population:
        pbt.check_pbt(sw, space_keys, config.oracle.policy, config.oracle.every, kinds)
    else:
        check_objectives(sw.objectives, config.oracle.policy, config.oracle.every, kinds, sw.asha, log)
    log(f"{start_line}; sampler {'random (pbt population)' if population else sw.sampler}; {pick_line(sw)}")
    sweep_dir = _driver_folder(sweep_uri, resume)
    try:
        with folder_lock(sweep_dir), session(prep, sweep_dir, cluster, log) as run:
            tracker, oracles = run.tracker, run.oracles
            context = {
                "config": config.as_dict(),
                "method": method,
                "seeds": list(sw.seeds),
                "oracle_refs": oracles.per_request,
                "objectives": list(sw.objectives),
                "robust": sw.robust,
                "fixed": {method: fixed},
            }
            meta = {"method": method, "trials": trials, "sweep_dir": sweep_uri, "fixed": fixed, "seeds": sw.seeds}
            parent = tracker.start_parent(name, config.as_dict(), space.raw, meta)
            first = objective_name(sw.objectives[0])
            n = len(prep.scenario)
            if population:
                context["pbt"] = {"interval": sw.pbt.interval, "keys": space_keys}
            scheduler = (
                ASHAScheduler(
                    time_attr="requests_done",
                    metric=first,
                    mode="min",
                    max_t=n,
                    grace_period=min(sw.grace_period, n),
                    reduction_factor=sw.reduction_factor,
                )
                if sw.asha
                else None
            )
            if population:
                search_alg, param_space, scheduler, concurrency = pbt.population(sw, space, space_keys, start, trials)
            else:
                journal = sweep_dir / "optuna-journal.log"
                search_alg, param_space = _searcher(config, space, journal, name, trials, start, space_keys, n), None
            grid = Grid(
                name=name,
                storage_path=sw.storage_path,
                out=sweep_dir,
                context=context,
                param_keys=space_keys,
                search_alg=search_alg,
                param_space=param_space,
                scheduler=scheduler,
                num_samples=trials,
                concurrency=concurrency,
                resources={"cpu": sw.trial_resources.cpu, "gpu": sw.trial_resources.gpu},
                max_failures=sw.max_failures,
                reuse_actors=sw.reuse_actors,
                stop=convergence.stopper(sw, n),
                checkpoints_kept=pbt.CHECKPOINTS_KEPT if population else 1,
            )
            results = execute(grid, prep, tracker, resume, log)
            trials_table = _trial_table(results, space_keys, sw.objectives, n)
            front = _front(trials_table, n, sw)
            columns = [objective_name(m) for m in sw.objectives]
            conv = convergence.analyse(
                trials_table, columns, n, sw.converged_tolerance, sw.reference_point, sw.min_trials
            )
            log(conv.line)
            confirmed = None
            if sw.confirm_seeds and len(front):
                confirmed = _confirm(
                    config, prep, tracker, front, context, space, space_keys, concurrency, resume, log, grid
                )
                front = _stable_first(front, confirmed, log)
            objectives = [objective_name(m) for m in sw.objectives]  # figures: plots/, MLflow
            publish_sweep(tracker, sweep_dir, sw.study_storage, name, trials_table, objectives, not population)
            for path in convergence.write(conv, sweep_dir):
                tracker.log_artifact(None, path)
            summary = _summarize(config, prep, trials_table, front, confirmed, tracker, sweep_dir, space_keys, conv)
            return SweepResult(
                sweep_dir=sweep_dir,
                location=sweep_uri,
                parent_run_id=parent,
                tracking_uri=tracker.uri,
                oracles_total=len(oracles.plan.owned),
                oracles_trained=oracles.trained(),
                trials=trials_table,
                best=summary,
                pareto=front if len(sw.objectives) > 1 else None,
                confirmed=confirmed,
                convergence=conv.curve,
                converged=conv.converged,
                verdict=conv.line,
                seconds=time.perf_counter() - t_start,
            )
    finally:
        if storage.is_remote(sweep_uri) and sweep_dir.exists():  # whatever the driver recorded, even on failure
            storage.upload(sweep_dir, sweep_uri)


def _driver_folder(sweep_uri: str, resume: bool) -> Path:
    """Where the driver keeps its own files (results stream, Optuna journal, MLflow record, plots): the sweep
    folder itself on a disk; on an object store, which has no append, a local working copy of it that goes up
    when the sweep ends (and comes down for a ``--resume`` on another machine)."""
    if not storage.is_remote(sweep_uri):
        return Path(sweep_uri)
    folder = storage.staging_dir(sweep_uri)
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)  # a leftover of a sweep removed from the store
    elif not folder.exists():
        storage.download(sweep_uri, folder)
    return folder


def _trial_table(grid: Any, space_keys: list[str], objectives: list[str], n_requests: int) -> pd.DataFrame:
    """One row per trial: status (``OK`` complete, ``PRUNED`` stopped by the scheduler before the last request,
    ``DIVERGED``, ``ERROR``), requests done, when it finished, final objectives with their mean and std over seeds,
    params."""
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or Path(result.path).name.split("_")[1]
        done = metrics.get("requests_done", 0)
        status = "ERROR" if result.error else ("DIVERGED" if metrics.get("diverged") else "OK")
        if status == "OK" and done < n_requests:
            status = "PRUNED"
        row = {"trial_id": trial_id, "number": convergence.trial_number(result.path, metrics.get("trial_id"))}
        row.update(status=status, requests_done=done, finished_at=metrics.get("reported_at", math.nan))
        for m in objectives:
            for prefix in ("objective", "mean", "std"):
                row[f"{prefix}_{m}"] = metrics.get(f"{prefix}_{m}", math.nan)
        config = result.config or {}  # None for a trial that errored before its first report
        for k in space_keys:
            row[k] = config.get(k)
        trials.append(row)
    return pd.DataFrame(trials)


def pick_order(
    front: pd.DataFrame,
    columns: list[str],
    rule: str = "knee",
    tolerance: float | None = None,
    weights: list[float] | None = None,
) -> pd.DataFrame:
    """The front ordered by the pick rule (``sweep.pick``), picked trial first. Every rule divides each value by
    the best value on the front, so no objective's units dominate:

    - ``knee``: the smallest sum of those ratios, ties broken by the first objective;
    - ``weights``: the same sum weighted by ``weights`` (one per objective);
    - ``first``: the best on the first objective among the members whose every other objective is within
      ``tolerance`` (relative) of the front's best on it; the rest follow by the first objective. With no
      tolerance it is simply the best on the first objective, so the headline metric is never traded away.

    One objective: simply best first."""
    if len(columns) == 1 or front.empty:
        return front.sort_values(columns[0])
    floor = 1e-12
    ratio = front[columns].clip(lower=floor) / front[columns].min().clip(lower=floor)
    if rule == "first":
        others = ratio[columns[1:]]
        inside = (others <= 1 + tolerance).all(axis=1) if tolerance is not None else pd.Series(True, front.index)
        return front.assign(_out=~inside).sort_values(["_out", columns[0]]).drop(columns="_out")
    w = pd.Series(weights if rule == "weights" and weights else [1.0] * len(columns), index=columns, dtype=float)
    score = (ratio * w).sum(axis=1)
    return front.assign(_score=score).sort_values(["_score", columns[0]]).drop(columns="_score")


def pick_line(sweep: Any) -> str:
    """The pick rule in words, for the sweep's first line, its record and every file of tuned defaults."""
    if len(sweep.objectives) == 1:
        return f"pick: best {sweep.objectives[0]}"
    if sweep.pick == "first":
        slack = "any" if sweep.pick_tolerance is None else f"{100 * sweep.pick_tolerance:g}%"
        return f"pick: first (best {sweep.objectives[0]}; slack on the others: {slack})"
    if sweep.pick == "weights":
        return f"pick: weights {list(sweep.pick_weights)} over {', '.join(sweep.objectives)}"
    return f"pick: knee over {', '.join(sweep.objectives)}"


def _front(trials: pd.DataFrame, n_requests: int, sweep: Any) -> pd.DataFrame:
    """The complete trials worth reporting: the best (one objective) or the Pareto front in pick order."""
    if trials.empty:
        return trials
    columns = [objective_name(m) for m in sweep.objectives]
    complete = trials[(trials["requests_done"] == n_requests) & (trials["status"] == "OK")]
    if complete.empty:
        return complete
    if len(columns) == 1:
        return complete.sort_values(columns[0]).iloc[:1]
    return pick_order(pareto_front(complete, columns), columns, sweep.pick, sweep.pick_tolerance, sweep.pick_weights)


NEIGHBOUR = "~near"  # a confirmed trial's neighbour: "<trial_id>~near"


def _confirm(
    config: Config,
    prep: Any,
    tracker: SweepTracker,
    front: pd.DataFrame,
    context: dict[str, Any],
    space: SearchSpace,
    space_keys: list[str],
    concurrency: int,
    resume: bool,
    log: Any,
    search: Grid,
) -> pd.DataFrame:
    """Re-run each front trial on the confirmation seeds (never used for tuning) as a fixed grid, with a
    neighbour of it (``sweep.stability_step``), and count the runs that diverged: one row per confirmed trial."""
    sw = config.sweep
    chosen = front if sw.confirm_front else front.iloc[:1]
    candidates = {str(r["trial_id"]): {k: _plain(r[k]) for k in space_keys} for _, r in chosen.iterrows()}
    if sw.stability_step > 0:
        for trial_id, params in list(candidates.items()):
            candidates[trial_id + NEIGHBOUR] = {k: space.inward(k, v, sw.stability_step) for k, v in params.items()}
    log(
        f"confirming {len(chosen)} trial(s) on fresh seeds {sw.confirm_seeds}"
        + (f", each with a neighbour {100 * sw.stability_step:g}% of every range inward" if sw.stability_step else "")
    )
    grid = Grid(
        name=f"{search.name}-confirm",
        storage_path=search.storage_path,
        out=search.out / "confirm",
        context={**context, "candidates": candidates},
        param_keys=["candidate", "seed"],
        role="confirm",
        param_space={"candidate": tune.grid_search(list(candidates)), "seed": tune.grid_search(sw.confirm_seeds)},
        concurrency=concurrency,
        resources=search.resources,
        max_failures=search.max_failures,
        reuse_actors=search.reuse_actors,
        tolerate_diverged=True,
    )
    execute(grid, prep, tracker, resume, log)
    rows = pd.read_parquet(grid.out / "results.parquet")
    return confirmation_table(rows, front, chosen, list(sw.objectives), sw, len(prep.scenario), space, space_keys)


def confirmation_table(
    rows: pd.DataFrame,
    front: pd.DataFrame,
    chosen: pd.DataFrame,
    objectives: list[str],
    sw: Any,
    n_requests: int,
    space: SearchSpace,
    space_keys: list[str],
) -> pd.DataFrame:
    """Per confirmed trial, in pick order: on every objective its tuned value beside the confirmed one on fresh
    seeds (mean + robust x std, the mean with its 95% t-interval, and the optimism: confirmed minus tuned); the
    stability check (runs of the trial and its neighbour, how many diverged: a run whose rows stop before the
    last request); and the values that sit on a bound of the space. ``picked`` marks the first trial in pick
    order whose runs never diverged (the first trial when all did)."""
    from scipy import stats

    out = []
    for _, tuned_row in chosen.iterrows():
        trial_id = str(tuned_row["trial_id"])
        own = rows[rows["candidate"] == trial_id]
        near = rows[rows["candidate"] == trial_id + NEIGHBOUR]
        reached = pd.concat([own, near]).groupby(["candidate", "seed"])["request"].nunique()
        per_seed = own.groupby("seed")[objectives].mean()
        record: dict[str, Any] = {"trial_id": trial_id, "seeds": len(per_seed)}
        worse = False
        for m in objectives:
            values = per_seed[m].dropna()
            mean = float(values.mean()) if len(values) else math.nan
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            half = float(stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))) if len(values) > 1 else 0
            value = mean + sw.robust * std
            tuned = float(tuned_row[objective_name(m)])
            record.update({f"tuned_{m}": tuned, f"confirmed_{m}": value, f"confirmed_mean_{m}": mean})
            record.update({f"confirmed_std_{m}": std, f"confirmed_lo_{m}": mean - half})
            record[f"confirmed_hi_{m}"] = mean + half
            record[f"optimism_{m}"] = value - tuned
            if len(near):
                record[f"neighbour_{m}"] = float(near.groupby("seed")[m].mean().mean())
            worse |= value - tuned > sw.confirm_tolerance * abs(tuned)
        record["worse_than_tuned"] = worse
        record["stability_runs"] = int(len(reached))
        record["diverged_runs"] = int((reached < n_requests).sum())
        record["divergence_rate"] = record["diverged_runs"] / max(1, record["stability_runs"])
        record["on_bound"] = ",".join(k for k in space_keys if space.on_bound(k, tuned_row[k]))
        out.append(record)
    table = pd.DataFrame(out)
    if len(table):
        stable = table.index[table["diverged_runs"] == 0]
        table["picked"] = False
        table.loc[stable[0] if len(stable) else table.index[0], "picked"] = True
    return table


def _stable_first(front: pd.DataFrame, confirmed: pd.DataFrame, log: Log) -> pd.DataFrame:
    """The front with the confirmed pick first: a trial whose confirmation or neighbour diverged gives way to the
    next in pick order that never did, and the sweep says so."""
    if confirmed.empty or not confirmed["picked"].any():
        return front
    picked = str(confirmed.loc[confirmed["picked"], "trial_id"].iloc[0])
    first = confirmed.iloc[0]
    if first["diverged_runs"]:
        verdict = f"; it gives way to trial {picked}" if picked != first["trial_id"] else "; none confirmed was stable"
        log(
            f"stability: trial {first['trial_id']} diverged in {first['diverged_runs']} of {first['stability_runs']} "
            f"confirmation runs (its own and its neighbour's){verdict}"
        )
    ids = front["trial_id"].astype(str)
    return pd.concat([front[ids == picked], front[ids != picked]])


def _plain(value: Any) -> Any:
    """numpy scalars (from a pandas row) as plain Python values, so configs stay YAML- and JSON-clean."""
    return value.item() if hasattr(value, "item") else value


def _plot(per_request: pd.DataFrame, metric: str) -> Any:
    from matplotlib.figure import Figure  # a bare Figure: nothing for pyplot to keep open

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for trial_id, frame in per_request.groupby("trial_id"):
        mean = frame.groupby("request")[metric].mean()
        ax.plot(mean.index, mean.values, marker="o", lw=1, label=str(trial_id)[-8:])
    ax.set_xlabel("request")
    ax.set_ylabel(metric)
    ax.set_yscale("log")
    ax.set_title(f"{metric} per request (mean over seeds), one line per trial")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _summarize(
    config: Config,
    prep: Any,
    trials: pd.DataFrame,
    front: pd.DataFrame,
    confirmed: pd.DataFrame | None,
    tracker: SweepTracker,
    sweep_dir: Path,
    space_keys: list[str],
    conv: convergence.Convergence,
) -> dict[str, Any]:
    """Best trial and confirmation on the parent run; tables and the per-request plot as artifacts."""
    columns = [objective_name(m) for m in config.sweep.objectives]
    best: dict[str, Any] = {}
    if len(front):
        top = front.iloc[0]
        best = {
            "best_trial": top["trial_id"],
            "best_params": {k: _plain(top[k]) for k in space_keys},
            "best_metrics": {c: top[c] for c in columns},
        }
    if confirmed is not None and len(confirmed):
        first = confirmed[confirmed["trial_id"] == str(best.get("best_trial"))].iloc[0]
        best["metrics"] = {f"confirmed_{m}": first[f"confirmed_{m}"] for m in config.sweep.objectives}
    tables = {"trials.csv": trials}
    if len(config.sweep.objectives) > 1 and len(front):
        tables["pareto.csv"] = front
    if confirmed is not None:
        tables["confirmed.csv"] = confirmed
        storage.write_local_atomic(sweep_dir / "confirmed.csv", lambda tmp: confirmed.to_csv(tmp, index=False))
    results = sweep_dir / "results.parquet"
    plots = {}
    if results.exists():
        per_request = pd.read_parquet(results)
        plots["kl_oracle_all_per_request.png"] = _plot(per_request, "kl_oracle_all")
    record = conv.parent_record()  # the reference point and the verdict, on the parent run
    metrics = {**best.get("metrics", {}), **record["metrics"]}  # confirmed objectives and the verdict
    tracker.finish({**best, "params": record["params"], "metrics": metrics}, tables, plots)
    storage.write_local_atomic(sweep_dir / "trials.csv", lambda tmp: trials.to_csv(tmp, index=False))
    return best
