"""The Tune function trainable: one configuration through one scenario on one or more seeds.

Every grid clutune runs goes through here: a sweep's trials (hyperparameters sampled by Optuna), and the
(method, seed) pairs of ``compare`` and ``study``. A trial advances the runs of all its seeds in lockstep and
ends each request with one ``tune.report``: the mean over seeds of every metric, the running request mean of
each objective with its std over seeds, and the objective itself (mean + kappa x std, ``sweep.robust``). The
per-seed rows travel in the same report (``rows``) so the driver can append them to the results stream.

After a request that ends ``checkpoint_seconds`` of the trial's time since its last checkpoint (or
``checkpoint_every`` requests, when set), and after the last, the report carries a ``tune.Checkpoint`` holding
the whole state of every seed's run. Time, not a request count, by default: a checkpoint costs the same after
a 1-second request as after a 1-minute one, and what a resume repeats is bounded in seconds either way.
Optimizers are rebuilt at the start of every request (spec Part A), so a checkpoint at a request boundary has
nothing left to lose, and a restarted trial continues bit for bit; the requests it repeats are reported again
and deduplicated by the driver.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from clutune.clu.runner import Diverged
from clutune.core.experiment import ExperimentRun, method_hparams, prepare_in_worker

STATE_FILE = "state.pt"
# Population-based training (context["pbt"]): its clock (requests done, one short on the last request so that
# no decision comes at the end of the stream), and the windowed objective the decisions rank trials by.
PBT_TIME_ATTR = "pbt_requests"


def objective_name(metric: str) -> str:
    """The reported value a sweep minimises for ``metric``: request mean, mean over seeds + kappa x std."""
    return f"objective_{metric}"


def window_name(metric: str) -> str:
    """The first objective over the requests since the last PBT decision: ``window_objective_<metric>``."""
    return f"window_{objective_name(metric)}"


class RunningMeans:
    """Per seed, the NaN-skipping running mean over requests of each objective metric, in O(1) per request."""

    def __init__(self, metrics: list[str], n_seeds: int) -> None:
        self.metrics = metrics
        self.sums = np.zeros((n_seeds, len(metrics)))
        self.counts = np.zeros((n_seeds, len(metrics)))

    def add(self, seed_index: int, row: dict[str, Any]) -> None:
        for j, m in enumerate(self.metrics):
            v = row.get(m)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                self.sums[seed_index, j] += float(v)
                self.counts[seed_index, j] += 1

    def report(self, kappa: float) -> dict[str, float]:
        """``mean_<m>`` and ``std_<m>`` over seeds (sample std; 0 for one seed) and ``objective_<m>``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seed = self.sums / self.counts
        out = {}
        for j, m in enumerate(self.metrics):
            values = per_seed[:, j]
            mean = float(values.mean())
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[f"mean_{m}"], out[f"std_{m}"] = mean, std
            out[objective_name(m)] = mean + kappa * std
        return out

    def state(self) -> dict[str, torch.Tensor]:
        return {"sums": torch.from_numpy(self.sums.copy()), "counts": torch.from_numpy(self.counts.copy())}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        self.sums, self.counts = state["sums"].numpy().copy(), state["counts"].numpy().copy()


def seed_mean(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per seed -> the mean over seeds of every numeric metric (NaN where every seed has NaN). A run's
    constant hyperparameters (``hp_*``) are params of its child run, not metrics; a PBT trial's, which change
    at its decisions, stay metrics."""
    out: dict[str, Any] = {"request": rows[0]["request"], "kind": rows[0]["kind"]}
    population = "exploited_from" in rows[0]
    for key, value in rows[0].items():
        if key in out or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key.startswith("hp_") and not population:
            continue
        values = np.array([float(r[key]) for r in rows], dtype=np.float64)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    return out


class CheckpointCadence:
    """Whether the request just done ends with a checkpoint: ``seconds`` since the last one (or since the trial
    began here), ``every`` requests since it (when set), or the last request."""

    def __init__(self, every: int | None, seconds: float) -> None:
        self.every, self.seconds = every, seconds
        self.requests, self.since = 0, time.perf_counter()

    def due(self, last: bool) -> bool:
        self.requests += 1
        now = time.perf_counter()
        if last or now - self.since >= self.seconds or (self.every is not None and self.requests >= self.every):
            self.requests, self.since = 0, now
            return True
        return False


def trial_setup(params: dict[str, Any], context: dict[str, Any]) -> tuple[str, list[int], dict[str, Any]]:
    """(method, seeds, hyperparameter overrides). A sweep trial carries sampled hyperparameters; a grid trial
    names its method (compare, study) or the sweep trial it confirms (``candidate``), and one seed."""
    params = dict(params)
    method = params.pop("method", context["method"])
    seeds = [params.pop("seed")] if "seed" in params else list(context["seeds"])
    candidate = params.pop("candidate", None)
    sampled = context["candidates"][candidate] if candidate is not None else params
    return method, seeds, {**context["fixed"].get(method, {}), **sampled}


def clu_trainable(params: dict[str, Any], context: dict[str, Any]) -> None:
    """``params``: the trial's hyperparameters (sweep) or its method and seed (grid). ``context``: config dict,
    default method and seeds, per-request oracle member refs (None: no oracle), the results folder that receives
    margins (``margins_out``), objectives, robust kappa, fixed
    hyperparameters per method. The checkpoint cadence is the config's (``sweep.checkpoint_*``)."""
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    prep = prepare_in_worker({**context["config"], "threads": max(1, int(cpus))})
    config = prep.config
    method, seeds, overrides = trial_setup(params, context)
    hparams = method_hparams(config, method, config.dataset.name, overrides)
    refs: list[list[ray.ObjectRef] | None] = context["oracle_refs"]  # per request: its members, member 0 first

    def oracle(k: int) -> Any:
        return None if refs[k] is None else ray.get(refs[k][0])

    def members(k: int) -> list[Any]:
        return [] if refs[k] is None else ray.get(refs[k][1:])

    trial_id = tune.get_context().get_trial_id()
    runs = [
        ExperimentRun(
            prep,
            method,
            hparams,
            s,
            run_id=f"{trial_id}-s{s}",
            oracle=oracle,
            members=members,
            margins_out=context.get("margins_out"),
        )
        for s in seeds
    ]
    for run in runs:
        run.head["trial_id"] = trial_id
        if "candidate" in params:
            run.head["candidate"] = params["candidate"]
    metrics = list(context["objectives"])
    means = RunningMeans(metrics, len(seeds))
    pbt = context.get("pbt")
    # PBT's score, the first objective since the last decision: kept only in a population-based sweep
    window = RunningMeans(metrics[:1], len(seeds)) if pbt is not None else None
    exploited_from = ""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
        heads = [dict(run.head) for run in runs]
        for run, run_state, head in zip(runs, state["runs"], heads, strict=True):
            run.restore(run_state)
            run.head.update(run_id=head["run_id"], trial_id=trial_id)  # a copied state continues as this trial
        means.restore(state["means"])
        if window is not None and "window" in state:
            window.restore(state["window"])
        if state.get("trial_id", trial_id) != trial_id:
            exploited_from = state["trial_id"]  # PBT: this trial continues from another trial's state
    cadence = CheckpointCadence(config.sweep.checkpoint_every, config.sweep.checkpoint_seconds)
    total = len(prep.scenario)
    streams = [run.steps() for run in runs]
    try:
        while runs[0].done < total:
            rows = [next(stream) for stream in streams]
            for i, row in enumerate(rows):
                means.add(i, row)
                if window is not None:
                    window.add(i, row)
            done = runs[0].done
            # Only what Tune, its searcher and scheduler read: Tune keeps statistics of every number a result
            # carries and writes them all into each experiment-state snapshot. The metrics ride in ``rows``,
            # which the driver takes off the result for its records.
            result = {"request": rows[0]["request"], "kind": rows[0]["kind"]}
            result.update(means.report(context["robust"]))
            # reported_at: the order in which trials completed, which the convergence verdict follows
            result.update(requests_done=done, method=method, rows=rows, reported_at=time.time())
            decision = False
            if pbt is not None:
                # Lineage and the hyperparameters of this request, per row: a trial's settings change over its
                # stream. The decision (when one is due) ranks the window, which starts over after it.
                for row in rows:
                    row.update({f"hp_{k}": params[k] for k in pbt["keys"]}, exploited_from=exploited_from)
                exploited_from = ""
                first = metrics[0]
                result[window_name(first)] = window.report(context["robust"])[objective_name(first)]
                decision = done < total and done % pbt["interval"] == 0
                # The last result's clock stays short of the next decision: none comes at the end of the stream.
                result[PBT_TIME_ATTR] = done if done < total else done - 1
                if decision:
                    window = RunningMeans(metrics[:1], len(seeds))
            # A population member checkpoints at decisions and at the end only: a copy restores its source's
            # checkpoint of the last decision, which must still be one of the two Tune keeps (the source writes
            # no other before the whole population has passed the next decision).
            due = (done == total or decision) if pbt is not None else cadence.due(done == total)
            if not due:
                tune.report(result)
                continue
            with tempfile.TemporaryDirectory() as folder:
                state = {"runs": [r.state() for r in runs], "means": means.state(), "trial_id": trial_id}
                if window is not None:
                    state["window"] = window.state()
                torch.save(state, Path(folder) / STATE_FILE)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
    except Diverged as e:
        # A diverged trial ends as the worst possible result instead of an error: Tune would retry it (it is
        # deterministic, so it would diverge again) and Optuna would learn nothing from an errored trial.
        k = runs[0].done
        result = {"request": k, "kind": prep.scenario.requests[k].kind, "requests_done": k, "diverged": 1.0}
        result.update({objective_name(m): math.inf for m in metrics})
        result.update(method=method, rows=[], error=str(e))
        tune.report(result)
