"""Requests over sample ids, the owned-id bookkeeping replayed from them, and the checks that refuse bad streams.

Resolution happens once, before any training: every request becomes a sorted id tensor, so the runner, the
oracles and the privacy checks all agree on exactly which samples each request touches.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from clutune.errors import UserError

LEARN, UNLEARN = "learn", "unlearn"
MAX_INDEX = 2**62  # ids, tasks and classes: far past any dataset, and safe as an int64
_SPEC_KEYS = {LEARN: {"task", "tasks", "ids"}, UNLEARN: {"task", "tasks", "classes", "fraction", "ids"}}


@dataclass(frozen=True)
class Request:
    """One request of the stream, as a method receives it in ``learn`` and ``unlearn``.

    Attributes:
        index: the request's position in the stream, from 0.
        kind: ``"learn"`` (D_L: ids never learned before) or ``"unlearn"`` (D_U: ids owned until now).
        ids: the request's sample ids, sorted int64 on the CPU; fetch their data with ``method.data.fetch``.
        tasks: the tasks whose samples the request touches.
        whole_tasks: True when the request is exactly one or more whole tasks (the task-aware setting), which
            methods that serve only whole tasks check in ``check_request``.
        spec: the request as written in the config (``{"unlearn": {"classes": [1]}}``), for messages.
    """

    index: int
    kind: str  # "learn" or "unlearn"
    ids: torch.Tensor  # sorted int64 training-sample ids
    tasks: tuple[int, ...]  # tasks whose samples this request touches
    whole_tasks: bool  # True when the request is exactly one or more whole tasks (task-aware)
    spec: dict[str, Any]


@dataclass
class Scenario:
    """The resolved stream: the requests (events over sample ids) and the task split.

    Only the events are stored, never a mask per request: a 1,000-request stream over 60,000 samples would
    otherwise hold 120 million booleans. :meth:`owned` and :meth:`unlearned` replay the events on demand from
    a cursor, so walking the stream in order costs O(request size) per step, and any ``k`` is answered
    correctly (by stepping the cursor back or forward, or replaying from the start, whichever is shorter).
    Every learn adds ids never learned before and every unlearn removes owned ids, so each step is exactly
    reversible.
    """

    requests: list[Request]
    task_classes: list[list[int]]
    sample_task: torch.Tensor  # task index of every training sample (-1: in no task)
    # The replay cursor: masks after request ``_at`` (-1: before the first request). Not part of the identity.
    _at: int = field(default=-1, init=False, repr=False, compare=False)
    _owned: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    _unlearned: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.requests)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def n_train(self) -> int:
        return int(self.sample_task.shape[0])

    def owned(self, k: int) -> torch.Tensor:
        """Bool mask over training ids owned after request ``k`` (negative ``k`` counts from the end)."""
        with self._lock:
            self._seek(self._index(k))
            return self._owned.clone()

    def unlearned(self, k: int) -> torch.Tensor:
        """Bool mask over training ids unlearned at or before request ``k`` (negative ``k`` from the end)."""
        with self._lock:
            self._seek(self._index(k))
            return self._unlearned.clone()

    def _index(self, k: int) -> int:
        n = len(self.requests)
        if isinstance(k, bool) or not isinstance(k, int):
            k = int(k)
        if not -n <= k < n:
            raise IndexError(f"request index {k} out of range for a stream of {n} requests")
        return k + n if k < 0 else k

    def _seek(self, k: int) -> None:
        if self._owned is None or k + 1 < self._at - k:  # closer to the start than to the cursor: replay
            self._owned = torch.zeros(self.n_train, dtype=torch.bool)
            self._unlearned = torch.zeros(self.n_train, dtype=torch.bool)
            self._at = -1
        while self._at < k:  # forward
            self._at += 1
            r = self.requests[self._at]
            if r.kind == LEARN:
                self._owned[r.ids] = True
            else:
                self._owned[r.ids] = False
                self._unlearned[r.ids] = True
        while self._at > k:  # backward: undo request _at
            r = self.requests[self._at]
            if r.kind == LEARN:
                self._owned[r.ids] = False
            else:
                self._owned[r.ids] = True
                self._unlearned[r.ids] = False
            self._at -= 1

    def class_task(self, num_classes: int) -> torch.Tensor:
        out = torch.full((num_classes,), -1, dtype=torch.int64)
        for t, classes in enumerate(self.task_classes):
            out[classes] = t
        return out


def resolve_task_classes(cfg_tasks: list[list[int]] | None, per_task: int, num_classes: int) -> list[list[int]]:
    """The class groups of the tasks: ``scenario.tasks`` if given, else consecutive groups of ``per_task``."""
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
    for v in values:
        if not 0 <= v <= MAX_INDEX:  # a torch index is an int64; beyond it is no sample, task or class of any data
            raise UserError(f"{where}: {key} {v} is out of range (0..{MAX_INDEX})")
    return values


def check_request_specs(cfg_requests: list[Any]) -> None:
    """What can be checked of explicit requests without the dataset: their shape, and every id, task and class
    a non-negative int64, every fraction a number in (0, 1). Runs with the config's validation, before any
    work; :func:`build_scenario` checks the rest against the data."""
    for index, raw in enumerate(cfg_requests):
        kind, spec = _parse(index, raw)
        ((key, value),) = spec.items()
        where = f"request {index} ({kind})"
        if key == "fraction":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise UserError(f"{where}: fraction must be a number in (0, 1), got {value!r}")
        else:
            _int_list(where, key, value)


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
    task_classes = resolve_task_classes(tasks, classes_per_task, num_classes)
    class_task = torch.full((num_classes,), -1, dtype=torch.int64)
    for t, classes in enumerate(task_classes):
        class_task[classes] = t
    sample_task = class_task[labels]
    if not cfg_requests:
        raise UserError("scenario.requests is empty: a scenario needs at least one learn request")

    learned = torch.zeros(n, dtype=torch.bool)
    unlearned = torch.zeros(n, dtype=torch.bool)
    unlearned_at = torch.full((n,), -1, dtype=torch.int64)
    requests = []
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
    return Scenario(requests, task_classes, sample_task)
