"""Requests over sample ids, the owned-id bookkeeping after each one, and the checks that refuse bad streams.

Resolution happens once, before any training: every request becomes a sorted id tensor, so the runner, the
oracles and the privacy checks all agree on exactly which samples each request touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from clutune.errors import UserError

LEARN, UNLEARN = "learn", "unlearn"
_SPEC_KEYS = {LEARN: {"task", "tasks", "ids"}, UNLEARN: {"task", "tasks", "classes", "fraction", "ids"}}


@dataclass(frozen=True)
class Request:
    index: int
    kind: str  # "learn" or "unlearn"
    ids: torch.Tensor  # sorted int64 training-sample ids
    tasks: tuple[int, ...]  # tasks whose samples this request touches
    whole_tasks: bool  # True when the request is exactly one or more whole tasks (task-aware)
    spec: dict[str, Any]


@dataclass
class Scenario:
    """The resolved stream: requests plus, after each one, the owned and unlearned masks over training ids."""

    requests: list[Request]
    task_classes: list[list[int]]
    sample_task: torch.Tensor  # task index of every training sample (-1: in no task)
    owned_after: list[torch.Tensor]  # bool masks, one per request
    unlearned_after: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.requests)

    def class_task(self, num_classes: int) -> torch.Tensor:
        out = torch.full((num_classes,), -1, dtype=torch.int64)
        for t, classes in enumerate(self.task_classes):
            out[classes] = t
        return out


def _task_classes(cfg_tasks: list[list[int]] | None, per_task: int, num_classes: int) -> list[list[int]]:
    if cfg_tasks is not None:
        seen: set[int] = set()
        for t, classes in enumerate(cfg_tasks):
            for c in classes:
                if not 0 <= c < num_classes:
                    raise UserError(f"scenario.tasks[{t}]: class {c} is not in the dataset (0..{num_classes - 1})")
                if c in seen:
                    raise UserError(f"scenario.tasks[{t}]: class {c} belongs to two tasks")
                seen.add(c)
        return [list(c) for c in cfg_tasks]
    if per_task < 1 or num_classes % per_task:
        raise UserError(f"scenario.classes_per_task={per_task} does not divide the {num_classes} classes")
    return [list(range(s, s + per_task)) for s in range(0, num_classes, per_task)]


def _parse(index: int, raw: Any) -> tuple[str, dict[str, Any]]:
    where = f"request {index}"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise UserError(f"{where}: expected one of {{learn: ...}} or {{unlearn: ...}}, got {raw!r}")
    ((kind, spec),) = raw.items()
    if kind not in _SPEC_KEYS:
        raise UserError(f"{where}: unknown request kind {kind!r} (learn or unlearn)")
    if not isinstance(spec, dict) or not spec:
        raise UserError(f"{where} ({kind}): empty request; give one of {', '.join(sorted(_SPEC_KEYS[kind]))}")
    unknown = set(spec) - _SPEC_KEYS[kind]
    if unknown:
        raise UserError(f"{where} ({kind}): unknown key {sorted(unknown)[0]!r}; known: {sorted(_SPEC_KEYS[kind])}")
    if len(spec) != 1:
        raise UserError(f"{where} ({kind}): give exactly one of {sorted(_SPEC_KEYS[kind])}, got {sorted(spec)}")
    return kind, spec


def _int_list(where: str, key: str, value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UserError(f"{where}: {key} must be a non-empty integer or list of integers, got {value!r}")
    return values


def build_scenario(
    cfg_requests: list[dict[str, Any]],
    labels: torch.Tensor,
    num_classes: int,
    classes_per_task: int = 2,
    tasks: list[list[int]] | None = None,
    seed: int = 0,
) -> Scenario:
    """Resolve and validate the request list against the dataset's training labels."""
    labels = labels.detach().cpu()
    n = int(labels.shape[0])
    task_classes = _task_classes(tasks, classes_per_task, num_classes)
    class_task = torch.full((num_classes,), -1, dtype=torch.int64)
    for t, classes in enumerate(task_classes):
        class_task[classes] = t
    sample_task = class_task[labels]
    if not cfg_requests:
        raise UserError("scenario.requests is empty: a scenario needs at least one learn request")

    learned = torch.zeros(n, dtype=torch.bool)
    unlearned = torch.zeros(n, dtype=torch.bool)
    unlearned_at = torch.full((n,), -1, dtype=torch.int64)
    requests, owned_after, unlearned_after = [], [], []
    for index, raw in enumerate(cfg_requests):
        kind, spec = _parse(index, raw)
        where = f"request {index} ({kind})"
        ((key, value),) = spec.items()
        owned = learned & ~unlearned
        whole = False
        if key in ("task", "tasks"):
            ts = _int_list(where, key, value)
            for t in ts:
                if not 0 <= t < len(task_classes):
                    raise UserError(f"{where}: unknown task {t} (tasks 0..{len(task_classes) - 1})")
            of_tasks = torch.isin(sample_task, torch.tensor(ts))
            mask = of_tasks
            if kind == UNLEARN:  # what is still owned of those tasks; earlier partial unlearning is fine
                if not (of_tasks & owned).any():
                    state = "already unlearned" if (of_tasks & learned).any() else "never learned"
                    raise UserError(f"{where}: tasks {ts} were {state}")
                mask = of_tasks & owned
            whole = bool(torch.equal(mask, of_tasks))
        elif key == "classes":
            cs = _int_list(where, key, value)
            for c in cs:
                if not 0 <= c < num_classes:
                    raise UserError(f"{where}: unknown class {c} (classes 0..{num_classes - 1})")
            of_class = torch.isin(labels, torch.tensor(cs))
            mask = of_class & owned
            if not mask.any():
                if (of_class & unlearned).any():
                    i = int((of_class & unlearned).nonzero()[0])
                    raise UserError(f"{where}: classes {cs} were already unlearned (at request {int(unlearned_at[i])})")
                raise UserError(f"{where}: classes {cs} were never learned")
        elif key == "fraction":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise UserError(f"{where}: fraction must be a number in (0, 1), got {value!r}")
            pool = owned.nonzero().flatten()
            k = int(round(float(value) * len(pool)))
            if k == 0:
                raise UserError(f"{where}: fraction {value} of {len(pool)} owned samples selects nothing")
            g = torch.Generator().manual_seed(seed * 1_000_003 + index)
            mask = torch.zeros(n, dtype=torch.bool)
            mask[pool[torch.randperm(len(pool), generator=g)[:k]]] = True
        else:  # ids
            ids = torch.tensor(_int_list(where, key, value), dtype=torch.int64)
            bad = ids[(ids < 0) | (ids >= n)]
            if len(bad):
                raise UserError(f"{where}: id {int(bad[0])} is not a training sample id (0..{n - 1})")
            if len(torch.unique(ids)) != len(ids):
                raise UserError(f"{where}: ids contain duplicates")
            mask = torch.zeros(n, dtype=torch.bool)
            mask[ids] = True

        if kind == LEARN:
            again = mask & learned & ~unlearned
            if again.any():
                raise UserError(
                    f"{where}: {int(again.sum())} ids are already owned (e.g. id {int(again.nonzero()[0])})"
                )
            back = mask & unlearned
            if back.any():
                i = int(back.nonzero()[0])
                raise UserError(
                    f"{where}: id {i} was unlearned at request {int(unlearned_at[i])} and may not be learned again"
                )
            if not mask.any():
                raise UserError(f"{where}: selects no samples")
            learned |= mask
        else:
            never = mask & ~learned
            if never.any():
                i = int(never.nonzero()[0])
                raise UserError(f"{where}: id {i} was never learned")
            gone = mask & unlearned
            if gone.any():
                i = int(gone.nonzero()[0])
                raise UserError(f"{where}: id {i} was already unlearned at request {int(unlearned_at[i])}")
            if not mask.any():
                raise UserError(f"{where}: selects no samples")
            unlearned_at[mask] = index
            unlearned |= mask
        ids = mask.nonzero().flatten()
        touched = tuple(int(t) for t in torch.unique(sample_task[ids]).tolist() if t >= 0)
        requests.append(Request(index, kind, ids, touched, whole, dict(spec)))
        owned_after.append(learned & ~unlearned)
        unlearned_after.append(unlearned.clone())
    return Scenario(requests, task_classes, sample_task, owned_after, unlearned_after)
