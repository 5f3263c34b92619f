"""Oracle ensembles: the M oracles of a scored request, so that "the right answer" is a distribution, not one draw.

An exact retrain is itself random (initialisation, data order), so one oracle is one draw from the retrain
distribution. With ``oracle.ensemble: M`` a scored request has M oracles, the members, with oracle seeds
``seed .. seed+M-1``:

- member 0 is today's oracle, trained by :func:`clutune.core.oracle.get_oracle` under today's key, so every
  number at M = 1 is unchanged and caches written before ensembles serve it;
- members 1..M-1 are trained by :func:`train_members`, packed (:mod:`clutune.core.packed_oracles`). Their key
  is the oracle key of their own seed with a member marker: a packed member is faithful to a solo model to 1e-5,
  not bit for bit, so it never shares a key with a member 0 trained solo under that seed. The marker names no
  index, so member 2 of seed 0 and member 1 of seed 1 (both seed 2) are the same cache entry.

Each member is a cache entry of its own: raising M trains only the new members.

KLoM's floor (:mod:`clutune.core.klom`) needs exact retrains with seeds other than the members': the ``retrain``
method retrains with the oracle recipe, so a model of that recipe with a further oracle seed is one. A command
that computes KLoM over n method seeds adds n floor models, seeds ``seed+M .. seed+M+n-1`` (:func:`floor_seeds`),
trained, keyed and cached exactly as members (a floor model is member M of a larger ensemble, and a later larger
ensemble finds it cached) but never counted in the ensemble columns.
"""

from __future__ import annotations

import hashlib

import torch

from clutune.core.oracle import OracleCache, OracleOutputs, OracleRecipe, oracle_key
from clutune.core.packed_oracles import DEFAULT_PACK, MemberSpec, get_oracles, train_oracles
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
    dataset: Dataset,
    owned_ids: torch.Tensor,
    recipe: OracleRecipe,
    seeds: list[int],
    keys: list[str],
    pack: int = DEFAULT_PACK,
) -> list[tuple[dict[str, torch.Tensor], OracleOutputs]]:
    """Train one member per seed on ``owned_ids``; per member, its weights and its outputs (``keys[i]`` names
    member i's outputs), in the order of ``seeds``.

    Every member an ensemble adds is trained here and only here: together, in packs of at most ``pack`` models
    (:func:`clutune.core.packed_oracles.train_oracles`), each as :func:`clutune.core.oracle.train_oracle` would
    train it alone with that seed (the same initialisation, data order and owned ids), to float rounding. A model
    that cannot be packed trains one at a time, with one line saying so.
    """
    specs = [MemberSpec(seed, owned_ids, key) for seed, key in zip(seeds, keys, strict=True)]
    return [(model.state_dict(), outputs) for model, outputs in train_oracles(dataset, specs, recipe, pack)]


def ensure_members(
    dataset: Dataset,
    owned_ids: torch.Tensor,
    recipe: OracleRecipe,
    seeds: list[int],
    cache: OracleCache,
    keep_weights: bool = False,
    pack: int = DEFAULT_PACK,
) -> list[OracleOutputs]:
    """The members of these seeds, from the cache where present; the others trained together (packs of at most
    ``pack``) and stored, each on its own (weights only with ``keep_weights``)."""
    specs = [MemberSpec(s, owned_ids, member_key(dataset.fingerprint, owned_ids, recipe, s)) for s in seeds]
    return get_oracles(dataset, specs, recipe, cache, keep_weights, pack)


def get_members(
    dataset: Dataset,
    owned_ids: torch.Tensor,
    recipe: OracleRecipe,
    seed: int,
    ensemble: int,
    cache: OracleCache,
    keep_weights: bool = False,
    pack: int = DEFAULT_PACK,
) -> list[OracleOutputs]:
    """Members 1..M-1 of the request that owns ``owned_ids`` (empty for M = 1); member 0 is ``get_oracle``'s."""
    seeds = member_seeds(seed, ensemble)[1:]
    return ensure_members(dataset, owned_ids, recipe, seeds, cache, keep_weights, pack)
