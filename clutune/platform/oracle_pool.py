"""Oracles as parallel Ray tasks: one per distinct owned-id set, trained once, shared by every trial.

An oracle depends on the scenario and the recipe, never on a trial's hyperparameters, so a sweep collects
the distinct keys up front, trains the missing ones as Ray tasks (each with its own resources) and hands
trials object refs to the outputs. Each task also writes the cache, so the next sweep trains none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
import torch

from clutune.config import Config
from clutune.experiment import Prepared, prepare
from clutune.oracle import OracleOutputs, get_oracle, oracle_key
from clutune.typed import from_dict


@dataclass
class OraclePlan:
    """Request index -> oracle key, and the distinct keys with the owned ids that define them."""

    key_of_request: list[str]
    owned: dict[str, torch.Tensor]
    cached: set[str]

    @property
    def missing(self) -> list[str]:
        return [k for k in self.owned if k not in self.cached]


def plan_oracles(prep: Prepared) -> OraclePlan:
    keys, owned = [], {}
    for k in range(len(prep.scenario)):
        ids = prep.owned_ids(k)
        key = oracle_key(prep.dataset.fingerprint, ids, prep.recipe, prep.config.oracle.seed)
        keys.append(key)
        owned.setdefault(key, ids)
    return OraclePlan(keys, owned, {k for k in owned if prep.cache.has(k)})


@ray.remote(max_retries=2)
def _oracle_task(config: dict[str, Any], owned_ids: torch.Tensor) -> OracleOutputs:
    """Runs on any worker: builds the data there, trains (or finds) the oracle, stores it, returns outputs."""
    prep = prepare(from_dict(Config, config))
    return get_oracle(prep.dataset, owned_ids, prep.recipe, prep.config.oracle.seed, prep.cache)


def submit_oracles(prep: Prepared, plan: OraclePlan) -> dict[str, ray.ObjectRef]:
    """One ref per distinct key: missing oracles train in parallel; cached ones go to the object store from here,
    so trials on other nodes read them without a shared cache folder."""
    res = prep.config.sweep.oracle_resources
    config = prep.config.as_dict()
    refs = {}
    for key, ids in plan.owned.items():
        if key in plan.cached:
            refs[key] = ray.put(prep.cache.load(key))
        else:
            refs[key] = _oracle_task.options(num_cpus=res.cpu, num_gpus=res.gpu).remote(config, ids)
    return refs
