"""The Tune function trainable: one method through one scenario, reporting and checkpointing per request.

Each request ends with one ``tune.report`` (request index as the step; all metrics plus the running request
means the objectives use) and one ``tune.Checkpoint`` holding the whole run state: model, method extras,
buffer, RNG states, evaluator history and the position in the stream. Optimizers are rebuilt at the start of
every request (spec Part A), so a checkpoint at a request boundary has no optimizer state left to lose. A
restarted trial resumes from ``tune.get_checkpoint()`` and continues bit for bit.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from clutune.clu.runner import Diverged
from clutune.config import Config
from clutune.experiment import ExperimentRun, method_hparams, prepare
from clutune.typed import from_dict

STATE_FILE = "state.pt"


def objective_name(metric: str) -> str:
    """The reported running mean over requests that a sweep optimises for ``metric``."""
    return f"mean_{metric}"


def running_means(rows: list[dict[str, Any]], metrics: list[str]) -> dict[str, float]:
    """Mean over the requests so far of each metric, NaNs skipped (a metric may not apply to every request)."""
    out = {}
    for m in metrics:
        values = [r[m] for r in rows if r.get(m) is not None and not math.isnan(r[m])]
        out[objective_name(m)] = float(np.mean(values)) if values else float("nan")
    return out


def clu_trainable(params: dict[str, Any], context: dict[str, Any]) -> None:
    """``params``: the trial's hyperparameters. ``context``: config dict, method, seed, oracle refs, objectives."""
    config = from_dict(Config, context["config"])
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    config.threads = max(1, int(cpus))
    prep = prepare(config)
    hparams = method_hparams(config, context["method"], config.dataset.name, {**context["fixed"], **params})
    refs: list[ray.ObjectRef] = context["oracle_refs"]
    run = ExperimentRun(prep, context["method"], hparams, context["seed"], oracle=lambda k: ray.get(refs[k]))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            run.restore(torch.load(Path(folder) / STATE_FILE, weights_only=True))
    metrics = list(context["objectives"])

    def report(row: dict[str, Any], current: ExperimentRun) -> None:
        result = dict(row)
        result.update(running_means(current.rows, metrics))
        result["requests_done"] = len(current.rows)
        with tempfile.TemporaryDirectory() as folder:
            torch.save(current.state(), Path(folder) / STATE_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        run.run(report)
    except Diverged as e:
        # A diverged trial ends as the worst possible result instead of an error: Tune would retry it (it is
        # deterministic, so it would diverge again) and Optuna would learn nothing from an errored trial.
        k = len(run.rows)
        result = {"request": k, "kind": prep.scenario.requests[k].kind, "requests_done": k, "diverged": 1.0}
        result.update({objective_name(m): math.inf for m in metrics})
        result["error"] = str(e)
        tune.report(result)
