"""Generated request streams (``scenario.generate``): long, seeded learn/unlearn sequences over sample ids.

The generator only writes a request list in the same vocabulary as a hand-written one (``learn: {ids}``,
``unlearn: {task}``, ``unlearn: {classes}``, ``unlearn: {ids}``); :func:`clutune.core.scenarios.build_scenario` then
resolves and validates it exactly as strictly as any other stream.

Rules:

- request 0 is a learn (of ``first_learn`` ids across every learnable class when that is set: a base set, so a
  long stream can start near the owned-set size it keeps); after that a seeded coin makes each request an
  unlearn with probability ``unlearn_ratio``, but an unlearn needs something owned (else the request is a
  learn) and a learn needs a class it may draw from (else, with something owned, the request is an unlearn);
- a learn takes ``learn_chunk`` ids never learned before, uniformly from the never-seen ids of one task's
  classes (``learn_classes: task``, tasks in round-robin order) or of every task's classes (``all``); unlearned
  ids therefore never come back, and a class unlearned by a task or class unlearn may only come back as new ids,
  and only with ``relearn: true``;
- an unlearn picks its kind by the ``unlearn_mix`` weights: ``task`` (what is still owned of one task with owned
  samples), ``class`` (one owned class, across tasks) or ``random`` (``random_fraction`` of the owned samples,
  at least one, as explicit ids).

Everything is drawn from private numpy generators seeded by ``seed``: the same settings and labels give the same
stream, whatever else the process does with the global random state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from clutune.core.config import GenerateConfig, ScenarioConfig
from clutune.core.scenarios import resolve_task_classes
from clutune.errors import UserError

_KEY = "scenario.generate"


def generate_requests(
    gen: GenerateConfig, labels: torch.Tensor, num_classes: int, task_classes: list[list[int]]
) -> list[dict[str, Any]]:
    """The request list of the stream ``gen`` over training samples with these labels, in config form."""
    y = labels.detach().cpu().numpy().astype(np.int64)
    n_tasks = len(task_classes)
    kinds_ss, draws_ss = np.random.SeedSequence(gen.seed).spawn(2)
    # The learn/unlearn coins come from their own generator, so the planned share of learns is known up front.
    coins = np.random.default_rng(kinds_ss).random(gen.n_requests) < gen.unlearn_ratio
    coins[0] = False
    planned_learns = int((~coins).sum())
    rng = np.random.default_rng(draws_ss)

    # Never-seen ids of each class, in a seeded order; a learn takes the next ones of the classes it draws.
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in range(num_classes)]
    used = np.zeros(num_classes, dtype=np.int64)
    owned = np.zeros(len(y), dtype=bool)
    owned_per_class = np.zeros(num_classes, dtype=np.int64)
    blocked = np.zeros(num_classes, dtype=bool)  # relearn false: classes a task or class unlearn removed
    kinds = list(GenerateConfig.UNLEARN_KINDS)
    weights = np.array([float(gen.unlearn_mix.get(k, 0.0)) for k in kinds])
    next_task = 0

    def learnable(classes: list[int]) -> list[int]:
        return [c for c in classes if not blocked[c]]

    def learn_classes(index: int) -> list[int] | None:
        """The classes request ``index`` would learn from, or None when no class may be learned."""
        nonlocal next_task
        if gen.learn_classes == "all":
            classes = learnable([c for cs in task_classes for c in cs])
            return classes or None
        for step in range(n_tasks):
            t = (next_task + step) % n_tasks
            classes = learnable(task_classes[t])
            if classes:
                next_task = (t + 1) % n_tasks
                return classes
        return None

    def learn(index: int, classes: list[int], chunk: int) -> dict[str, Any]:
        avail = np.array([len(pools[c]) - used[c] for c in classes], dtype=np.int64)
        if avail.sum() < chunk:
            raise UserError(_exhausted(gen, index, classes, chunk, int(avail.sum()), y, task_classes, planned_learns))
        counts = rng.multivariate_hypergeometric(avail, chunk)
        parts = []
        for c, k in zip(classes, counts.tolist(), strict=True):
            parts.append(pools[c][used[c] : used[c] + k])
            used[c] += k
            owned_per_class[c] += k
        ids = np.sort(np.concatenate(parts))
        owned[ids] = True
        return {"learn": {"ids": ids.tolist()}}

    def unlearn(index: int) -> dict[str, Any]:
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if kind == "task":
            candidates = [t for t, cs in enumerate(task_classes) if owned_per_class[cs].sum() > 0]
            t = candidates[int(rng.integers(len(candidates)))]
            removed = list(task_classes[t])
            request: dict[str, Any] = {"unlearn": {"task": t}}
        elif kind == "class":
            candidates = np.flatnonzero(owned_per_class > 0).tolist()
            removed = [candidates[int(rng.integers(len(candidates)))]]
            request = {"unlearn": {"classes": removed}}
        else:
            pool = np.flatnonzero(owned)
            k = max(1, int(round(gen.random_fraction * len(pool))))
            ids = np.sort(rng.choice(pool, size=k, replace=False))
            owned[ids] = False
            owned_per_class[:] -= np.bincount(y[ids], minlength=num_classes)
            return {"unlearn": {"ids": ids.tolist()}}
        owned[np.isin(y, removed) & owned] = False
        owned_per_class[removed] = 0
        if not gen.relearn:
            blocked[removed] = True
        return request

    out: list[dict[str, Any]] = []
    for index in range(gen.n_requests):
        if index == 0 and gen.first_learn:
            out.append(learn(index, [c for cs in task_classes for c in cs], gen.first_learn))
            continue
        has_owned = bool(owned_per_class.sum() > 0)
        if coins[index] and has_owned and weights.sum() > 0:
            out.append(unlearn(index))
            continue
        classes = learn_classes(index)
        if classes is not None:
            out.append(learn(index, classes, gen.learn_chunk))
        elif has_owned and weights.sum() > 0:
            out.append(unlearn(index))
        else:
            raise UserError(
                f"config key '{_KEY}.relearn': request {index}: relearn is false and every class was unlearned, "
                f"so the stream cannot continue; set relearn true, lower unlearn_ratio or n_requests"
            )
    return out


def _exhausted(
    gen: GenerateConfig,
    index: int,
    classes: list[int],
    chunk: int,
    left: int,
    y: np.ndarray,
    task_classes: list[list[int]],
    planned_learns: int,
) -> str:
    need = planned_learns * gen.learn_chunk + (gen.first_learn - gen.learn_chunk if gen.first_learn else 0)
    key = "first_learn" if index == 0 and gen.first_learn else "learn_chunk"
    n_in_tasks = int(np.isin(y, [c for cs in task_classes for c in cs]).sum())
    if key == "first_learn":
        scope = "every class"
    elif gen.learn_classes == "task":
        per_task = math.ceil(planned_learns / len(task_classes)) * gen.learn_chunk
        scope = f"the task of classes {classes}, visited round-robin, needs about {per_task} of them"
    else:
        scope = f"classes {classes}"
    return (
        f"config key '{_KEY}.{key}': request {index} (learn) needs {chunk} never-learned samples "
        f"but only {left} are left of {scope}; the stream needs about {need} training samples "
        f"({planned_learns} learns x {gen.learn_chunk}) and the training set has {n_in_tasks}: raise "
        f"dataset.samples (mnist1d; 80% of it is training data) or lower {_KEY}.{key}"
    )


def scenario_requests(scenario: ScenarioConfig, labels: torch.Tensor, num_classes: int) -> list[dict[str, Any]]:
    """``scenario.requests``, or the generated stream when ``scenario.generate`` is set."""
    if scenario.generate is None:
        return scenario.requests
    if scenario.requests:
        raise UserError("config key 'scenario.requests': must be empty when scenario.generate is set")
    task_classes = resolve_task_classes(scenario.tasks, scenario.classes_per_task, num_classes)
    return generate_requests(scenario.generate, labels, num_classes, task_classes)


__all__ = ["generate_requests", "scenario_requests"]
