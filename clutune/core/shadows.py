"""U-LiRA's shadow models: the oracle recipe trained packed on random halves of a request's data, cached as oracles.

At a scored unlearn request the pool is what the model had trained on just before it (the owned samples and the
forget set) plus the test set, the held-out non-members: the attack scores both groups by the same per-example
rule, so both need shadows in and out. Shadows train on the pool as one training split, the test samples after
the training samples (test sample j is pool id ``n_train + j``); each trains on exactly the half of the pool that
:func:`clutune.core.ulira.membership` gives it, through its own door (:class:`clutune.clu.access.TrainAccess`,
open to its half only), never the method's.

A shadow is a cache entry like an oracle member (:mod:`clutune.core.members`): its key hashes the pool's
content, its half, the recipe and its seed, with a shadow marker. The halves are drawn from the pool's ids and
``evaluation.ulira.seed``, so every method and seed of a grid attacked at the same request uses the same shadows,
trained once.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clutune.core import storage
from clutune.core.oracle import OracleCache, OracleOutputs, OracleRecipe, oracle_key
from clutune.core.packed_oracles import DEFAULT_PACK, MemberSpec, get_oracles
from clutune.core.scenarios import Scenario
from clutune.core.ulira import membership
from clutune.data import Dataset


def pool_dataset(dataset: Dataset) -> Dataset:
    """The dataset with its test samples appended to the training split, under a fingerprint of its own."""
    return Dataset(
        name=dataset.name,
        x_train=torch.cat([dataset.x_train, dataset.x_test]),
        y_train=torch.cat([dataset.y_train, dataset.y_test]),
        x_test=dataset.x_test,
        y_test=dataset.y_test,
        num_classes=dataset.num_classes,
        fingerprint=hashlib.sha256(f"ulira-pool|{dataset.fingerprint}".encode()).hexdigest()[:16],
        class_names=dataset.class_names,
        pixel_mean=dataset.pixel_mean,
        pixel_std=dataset.pixel_std,
    )


def attacked_requests(kinds: list[str], scored: list[bool], every: int) -> list[bool]:
    """Whether request k is attacked: every ``every``-th unlearn request the oracle policy scores, from the first."""
    out, seen = [], 0
    for kind, with_oracle in zip(kinds, scored, strict=True):
        chosen = kind == "unlearn" and with_oracle and seen % every == 0
        seen += kind == "unlearn" and with_oracle
        out.append(chosen)
    return out


def pool_ids(scenario: Scenario, k: int, n_train: int, n_test: int) -> torch.Tensor:
    """Request k's pool, sorted: the training samples owned just before it, then every test sample."""
    before = scenario.owned(k - 1) if k > 0 else torch.zeros_like(scenario.owned(k))
    train = (before | scenario.owned(k)).nonzero().flatten()
    return torch.cat([train, n_train + torch.arange(n_test)])


@dataclass
class ShadowSet:
    """The shadows of one request: ``pool`` (n,) the pool ids, ``inside`` (S, n) which shadow trained on which,
    and each shadow's outputs (``logits_train`` over the whole pool dataset)."""

    pool: torch.Tensor
    inside: np.ndarray
    outputs: list[OracleOutputs]


def shadow_key(fingerprint: str, half: torch.Tensor, recipe: OracleRecipe, seed: int) -> str:
    solo = oracle_key(fingerprint, half, recipe, seed)
    return hashlib.sha256(f"shadow|{solo}".encode()).hexdigest()[:24]


def halves(pool: torch.Tensor, shadows: int, seed: int) -> np.ndarray:
    """Which shadow trains on which pool sample, drawn from the pool itself and ``seed``."""
    digest = hashlib.sha256(pool.to(torch.int64).numpy().tobytes()).digest()
    return membership(len(pool), shadows, int.from_bytes(digest[:8], "little") ^ seed)


def shadow_specs(
    pooled: Dataset, pool: torch.Tensor, recipe: OracleRecipe, shadows: int, seed: int, oracle_seed: int
) -> tuple[np.ndarray, list[MemberSpec]]:
    """The membership matrix and one spec per shadow (seed ``oracle_seed + s``, its half, its key)."""
    inside = halves(pool, shadows, seed)
    specs = []
    for s in range(shadows):
        half = pool[torch.from_numpy(inside[s])]
        specs.append(MemberSpec(oracle_seed + s, half, shadow_key(pooled.fingerprint, half, recipe, oracle_seed + s)))
    return inside, specs


def get_shadows(
    dataset: Dataset,
    scenario: Scenario,
    k: int,
    recipe: OracleRecipe,
    cache: OracleCache,
    shadows: int,
    seed: int,
    oracle_seed: int,
    pack: int = DEFAULT_PACK,
) -> ShadowSet:
    """Request k's shadows: from the cache where present, the others trained packed and stored."""
    pooled = pool_dataset(dataset)
    pool = pool_ids(scenario, k, dataset.n_train, dataset.n_test)
    inside, specs = shadow_specs(pooled, pool, recipe, shadows, seed, oracle_seed)
    return ShadowSet(pool, inside, get_oracles(pooled, specs, recipe, cache, False, pack))


def shadow_cost(pool_sizes: list[int], shadows: int, epochs: int) -> tuple[int, int]:
    """(models, samples processed) of training every shadow of the attacked requests, none cached."""
    return shadows * len(pool_sizes), sum(shadows * epochs * (n // 2) for n in pool_sizes)


SCORES_DIR = "ulira"
GROUPS = ("forget", "forget_test", "retain", "retain_test")


def attack_scores_path(out: str | Path, run_id: str, k: int) -> str:
    """Where a run's U-LiRA scores at request k go, beside its margins: ``<out>/ulira/<run_id>/request-<k>.npz``."""
    return storage.join(str(out), SCORES_DIR, run_id, f"request-{k}.npz")


def write_attack_scores(out: str | Path, run_id: str, k: int, scores: dict[str, np.ndarray]) -> None:
    """The likelihood ratios of the forget and retained samples and of the test samples of their classes
    (float32), for the report's ROC curves."""
    buffer = io.BytesIO()
    np.savez(buffer, **{g: np.asarray(scores[g], dtype=np.float32) for g in GROUPS})
    storage.write_bytes(attack_scores_path(out, run_id, k), buffer.getvalue())


def read_attack_scores(location: str | Path) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(storage.read_bytes(str(location))), allow_pickle=False) as blob:
        return {g: blob[g] for g in GROUPS}


__all__ = [
    "attack_scores_path",
    "read_attack_scores",
    "write_attack_scores",
    "ShadowSet",
    "attacked_requests",
    "get_shadows",
    "pool_dataset",
    "pool_ids",
    "shadow_cost",
    "shadow_specs",
]
