"""Oracles as parallel Ray tasks: one per distinct owned-id set, trained once, shared by every trial.

An oracle depends on the scenario and the recipe, never on a trial's hyperparameters, so a sweep collects
the distinct keys up front, trains the missing ones as Ray tasks (each with its own resources) and hands
trials object refs to the outputs. Each task also writes the cache, so the next sweep trains none. Only the
requests that ``oracle.policy`` gives an oracle are planned; the others get None.

With ``oracle.ensemble`` ≥ 2 a request's members 1..M-1 (:mod:`clutune.core.members`) go through the same plan,
lease and pool: each is a key of its own, and the missing members of one owned set train together, in packs of
at most ``oracle.pack`` (:func:`clutune.core.members.train_members`, packed by :mod:`clutune.core.packed_oracles`),
one task per pack and one ref per member. KLoM's floor models (``floor`` of them per scored request,
:func:`clutune.core.members.floor_seeds`) are planned the same way, in the same packs, and kept apart in
``floor_of_request``: the trials never see them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray
import torch

from clutune.core.experiment import Prepared, prepare_in_worker
from clutune.core.members import ensure_members, floor_seeds, member_key, member_seeds
from clutune.core.oracle import OracleOutputs, SplitShape, get_oracle, oracle_key, oracle_requests
from clutune.core.relearn import keeps_oracle_weights


@dataclass
class OraclePlan:
    """Request index -> oracle key (None: the policy gives it no oracle), and the distinct keys with the owned ids
    that define them. With an ensemble, ``owned`` holds every member's key too, and ``members_of_request`` the
    keys of members 1..M-1 (empty where there is no oracle, and for M = 1), ``floor_of_request`` the keys of
    KLoM's floor models (empty unless asked for), ``seed_of`` the oracle seeds of both."""

    key_of_request: list[str | None]
    owned: dict[str, torch.Tensor]
    cached: set[str]
    members_of_request: list[list[str]]
    seed_of: dict[str, int]
    floor_of_request: list[list[str]]

    @property
    def missing(self) -> list[str]:
        return [k for k in self.owned if k not in self.cached]

    def request_refs(self, refs: dict[str, ray.ObjectRef]) -> list[ray.ObjectRef | None]:
        """Per request, the ref of its oracle's outputs, or None where it has no oracle."""
        return [None if key is None else refs[key] for key in self.key_of_request]

    def member_refs(self, refs: dict[str, ray.ObjectRef]) -> list[list[ray.ObjectRef] | None]:
        """Per request, the refs of all its members' outputs (member 0 first), or None where it has no oracle."""
        return [
            None if key is None else [refs[key], *(refs[m] for m in others)]
            for key, others in zip(self.key_of_request, self.members_of_request, strict=True)
        ]

    def floor_refs(self, refs: dict[str, ray.ObjectRef]) -> list[list[ray.ObjectRef]]:
        """Per request, the refs of its floor models' outputs (empty where there are none)."""
        return [[refs[m] for m in floor] for floor in self.floor_of_request]

    def packs(self, size: int) -> list[list[str]]:
        """The missing members 1..M-1 and floor models, grouped by owned set in packs of at most ``size``: each
        pack trains in one task."""
        groups: dict[str, list[str]] = {}
        for key, others, floor in zip(self.key_of_request, self.members_of_request, self.floor_of_request, strict=True):
            if key is not None:
                groups.setdefault(key, [m for m in [*others, *floor] if m not in self.cached])
        return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


def plan_oracles(prep: Prepared, floor: int = 0) -> OraclePlan:
    """The command's oracles; ``floor``: KLoM's floor models per scored request (0: none)."""
    cfg = prep.config.oracle
    wanted = oracle_requests(cfg.policy, cfg.every, [r.kind for r in prep.scenario.requests])
    keys: list[str | None] = []
    members: list[list[str]] = []
    owned: dict[str, torch.Tensor] = {}
    seed_of: dict[str, int] = {}
    floors: list[list[str]] = []
    for k, want in enumerate(wanted):
        if not want:
            keys.append(None)
            members.append([])
            floors.append([])
            continue
        ids = prep.owned_ids(k)
        key = oracle_key(prep.dataset.fingerprint, ids, prep.recipe, cfg.seed)
        keys.append(key)
        owned.setdefault(key, ids)
        members.append([])
        floors.append([])
        for group, seeds in (
            (members[-1], member_seeds(cfg.seed, cfg.ensemble)[1:]),
            (floors[-1], floor_seeds(cfg.seed, cfg.ensemble, floor)),
        ):
            for seed in seeds:
                member = member_key(prep.dataset.fingerprint, ids, prep.recipe, seed)
                group.append(member)
                owned.setdefault(member, ids)
                seed_of[member] = seed
    shape = SplitShape.of(prep.dataset)
    return OraclePlan(keys, owned, {k for k in owned if prep.cache.has(k, shape)}, members, seed_of, floors)


@contextlib.contextmanager
def leased_plan(prep: Prepared, floor: int = 0) -> Iterator[OraclePlan]:
    """The command's oracle plan (with ``floor`` KLoM floor models per scored request), its cache entries leased
    while the block runs: ``clutune oracles --prune`` keeps away from every key a running command uses or is
    training."""
    plan = plan_oracles(prep, floor)
    with prep.cache.lease(set(plan.owned)):
        yield plan


@ray.remote(max_retries=2)
def _oracle_task(config: dict[str, Any], owned_ids: torch.Tensor) -> OracleOutputs:
    """Runs on any worker: builds the data there, trains (or finds) the oracle, stores it, returns outputs."""
    prep = prepare_in_worker(config)
    oracle = prep.config.oracle
    weights = keeps_oracle_weights(prep.config)  # the relearning attack trains a copy of the oracle
    return get_oracle(prep.dataset, owned_ids, prep.recipe, oracle.seed, prep.cache, weights)


@ray.remote(max_retries=2)
def _members_task(config: dict[str, Any], owned_ids: torch.Tensor, seeds: list[int]) -> Any:
    """Members of one owned set as one pack: each trained (or found), stored, and returned as its own object."""
    prep = prepare_in_worker(config)
    oracle = prep.config.oracle
    outputs = ensure_members(prep.dataset, owned_ids, prep.recipe, seeds, prep.cache, oracle.keep_weights, oracle.pack)
    return outputs if len(outputs) > 1 else outputs[0]  # Ray splits a list into num_returns objects


def submit_oracles(prep: Prepared, plan: OraclePlan) -> dict[str, ray.ObjectRef]:
    """One ref per distinct key: missing oracles train in parallel; cached ones go to the object store from here,
    so trials on other nodes read them without a shared cache folder. The missing members of one owned set train
    in one task."""
    res = prep.config.sweep.oracle_resources
    config = prep.config.as_dict()
    refs = {}
    for key, ids in plan.owned.items():
        if key in plan.cached:
            refs[key] = ray.put(prep.cache.load(key, SplitShape.of(prep.dataset)))
        elif key not in plan.seed_of:
            refs[key] = _oracle_task.options(num_cpus=res.cpu, num_gpus=res.gpu).remote(config, ids)
    for pack in plan.packs(prep.config.oracle.pack):
        seeds = [plan.seed_of[m] for m in pack]
        task = _members_task.options(num_cpus=res.cpu, num_gpus=res.gpu, num_returns=len(pack))
        out = task.remote(config, plan.owned[pack[0]], seeds)
        refs.update(zip(pack, out if len(pack) > 1 else [out], strict=True))
    return refs
