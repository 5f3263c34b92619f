"""Oracles as parallel Ray tasks: one per distinct owned-id set, trained once, shared by every trial.

An oracle depends on the scenario and the recipe, never on a trial's hyperparameters, so a sweep collects
the distinct keys up front, trains the missing ones as Ray tasks (each with its own resources) and hands
trials object refs to the outputs. Each task also writes the cache, so the next sweep trains none. Only the
requests that ``oracle.policy`` gives an oracle are planned; the others get None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
import torch

from clutune.core.experiment import Prepared, prepare_in_worker
from clutune.core.oracle import OracleOutputs, SplitShape, get_oracle, oracle_key, oracle_requests


@dataclass
class OraclePlan:
    """Request index -> oracle key (None: the policy gives it no oracle), and the distinct keys with the owned ids
    that define them."""

    key_of_request: list[str | None]
    owned: dict[str, torch.Tensor]
    cached: set[str]

    @property
    def missing(self) -> list[str]:
        return [k for k in self.owned if k not in self.cached]

    def request_refs(self, refs: dict[str, ray.ObjectRef]) -> list[ray.ObjectRef | None]:
        """Per request, the ref of its oracle's outputs, or None where it has no oracle."""
        return [None if key is None else refs[key] for key in self.key_of_request]


def plan_oracles(prep: Prepared) -> OraclePlan:
    cfg = prep.config.oracle
    wanted = oracle_requests(cfg.policy, cfg.every, [r.kind for r in prep.scenario.requests])
    keys: list[str | None] = []
    owned: dict[str, torch.Tensor] = {}
    for k, want in enumerate(wanted):
        if not want:
            keys.append(None)
            continue
        ids = prep.owned_ids(k)
        key = oracle_key(prep.dataset.fingerprint, ids, prep.recipe, cfg.seed)
        keys.append(key)
        owned.setdefault(key, ids)
    return OraclePlan(keys, owned, {k for k in owned if prep.cache.has(k, SplitShape.of(prep.dataset))})


@ray.remote(max_retries=2)
def _oracle_task(config: dict[str, Any], owned_ids: torch.Tensor) -> OracleOutputs:
    """Runs on any worker: builds the data there, trains (or finds) the oracle, stores it, returns outputs."""
    prep = prepare_in_worker(config)
    oracle = prep.config.oracle
    return get_oracle(prep.dataset, owned_ids, prep.recipe, oracle.seed, prep.cache, oracle.keep_weights)


def submit_oracles(prep: Prepared, plan: OraclePlan) -> dict[str, ray.ObjectRef]:
    """One ref per distinct key: missing oracles train in parallel; cached ones go to the object store from here,
    so trials on other nodes read them without a shared cache folder."""
    res = prep.config.sweep.oracle_resources
    config = prep.config.as_dict()
    refs = {}
    for key, ids in plan.owned.items():
        if key in plan.cached:
            refs[key] = ray.put(prep.cache.load(key, SplitShape.of(prep.dataset)))
        else:
            refs[key] = _oracle_task.options(num_cpus=res.cpu, num_gpus=res.gpu).remote(config, ids)
    return refs
