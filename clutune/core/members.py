"""Oracle ensembles: the M oracles of a scored request, so that "the right answer" is a distribution, not one draw.

An exact retrain is itself random (initialisation, data order), so one oracle is one draw from the retrain
distribution. With ``oracle.ensemble: M`` a scored request has M oracles, the members, with oracle seeds
``seed .. seed+M-1``:

- member 0 is today's oracle, trained by :func:`clutune.core.oracle.get_oracle` under today's key, so every
  number at M = 1 is unchanged and caches written before ensembles serve it;
- members 1..M-1 are trained by :func:`train_members`, the one call site of the trainer that trains many models
  of one recipe together. Their key is the oracle key of their own seed with a member marker: a member may be
  trained packed (faithful to a solo model to 1e-5, not bit for bit), so it never shares a key with a member 0
  trained solo under that seed. The marker names no index, so member 2 of seed 0 and member 1 of seed 1 (both
  seed 2) are the same cache entry.

Each member is a cache entry of its own: raising M trains only the new members.

KLoM's floor (:mod:`clutune.core.klom`) needs exact retrains with seeds other than the members': the ``retrain``
method retrains with the oracle recipe, so a model of that recipe with a further oracle seed is one. A command
that computes KLoM over n method seeds adds n floor models, seeds ``seed+M .. seed+M+n-1`` (:func:`floor_seeds`),
trained, keyed and cached exactly as members (a floor model is member M of a larger ensemble, and a later larger
ensemble finds it cached) but never counted in the ensemble columns.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import torch

from clutune.clu.compute import effective_precision
from clutune.core.oracle import OracleCache, OracleOutputs, OracleRecipe, oracle_key, train_oracle
from clutune.data import Dataset


def member_seeds(seed: int, ensemble: int) -> list[int]:
    """The oracle seeds of members 0..M-1."""
    return [seed + m for m in range(ensemble)]


def floor_seeds(seed: int, ensemble: int, count: int) -> list[int]:
    """The oracle seeds of the ``count`` floor models, the seeds right after the M members'."""
    return [seed + ensemble + i for i in range(count)]


def member_key(fingerprint: str, owned_ids: torch.Tensor, recipe: OracleRecipe, seed: int) -> str:
    """The cache key of a member (index 1 or more) trained with oracle seed ``seed``."""
    solo = oracle_key(fingerprint, owned_ids, recipe, seed)
    return hashlib.sha256(f"member|{solo}".encode()).hexdigest()[:24]


def train_members(
    dataset: Dataset, owned_ids: torch.Tensor, recipe: OracleRecipe, seeds: list[int], keys: list[str]
) -> list[tuple[dict[str, torch.Tensor], OracleOutputs]]:
    """Train one member per seed on ``owned_ids``; per member, its weights and its outputs (``keys[i]`` names
    member i's outputs), in the order of ``seeds``.

    Every member an ensemble adds is trained here and only here, so a trainer that trains the members together
    (one vectorised step for a pack of models) replaces this body and nothing else. Its contract: each member
    as :func:`clutune.core.oracle.train_oracle` would train it alone with that seed (the same initialisation,
    data order and owned ids), to float rounding; outputs on every train and test sample. This body trains
    them one after another with that solo trainer.
    """
    trained = []
    for seed, key in zip(seeds, keys, strict=True):
        model, outputs = train_oracle(dataset, owned_ids, recipe, seed, key)
        trained.append((model.state_dict(), outputs))
    return trained


def ensure_members(
    dataset: Dataset,
    owned_ids: torch.Tensor,
    recipe: OracleRecipe,
    seeds: list[int],
    cache: OracleCache,
    keep_weights: bool = False,
) -> list[OracleOutputs]:
    """The members of these seeds, from the cache where present; the others trained in one :func:`train_members`
    call and stored, each on its own (weights only with ``keep_weights``)."""
    keys = [member_key(dataset.fingerprint, owned_ids, recipe, s) for s in seeds]
    found = {key: cache.load(key) for key in keys}
    missing = [(s, k) for s, k in zip(seeds, keys, strict=True) if found[k] is None]
    if missing:
        new_seeds, new_keys = [s for s, _ in missing], [k for _, k in missing]
        trained = train_members(dataset, owned_ids, recipe, new_seeds, new_keys)
        for (weights, outputs), seed in zip(trained, new_seeds, strict=True):
            meta = {
                "dataset": dataset.name,
                "fingerprint": dataset.fingerprint,
                "seed": seed,
                "member": True,
                "n_owned": len(owned_ids),
                "recipe": asdict(recipe),
                "precision_used": effective_precision(recipe.precision, dataset.x_train.device),
            }
            cache.store(outputs, meta, weights if keep_weights else None)
            found[outputs.key] = outputs
    return [found[k] for k in keys]


def get_members(
    dataset: Dataset,
    owned_ids: torch.Tensor,
    recipe: OracleRecipe,
    seed: int,
    ensemble: int,
    cache: OracleCache,
    keep_weights: bool = False,
) -> list[OracleOutputs]:
    """Members 1..M-1 of the request that owns ``owned_ids`` (empty for M = 1); member 0 is ``get_oracle``'s."""
    return ensure_members(dataset, owned_ids, recipe, member_seeds(seed, ensemble)[1:], cache, keep_weights)
