"""Many oracles of one recipe trained as packs: the retrain distribution (oracle ensembles, retrains, shadow
models) at a fraction of the cost of training them one after another.

A member is a seed and an owned-id set. Packed, it gets what :func:`clutune.core.oracle.train_oracle` would give
it alone: the same initial weights, data order and door to the data, and outputs of the same form
(:class:`OracleOutputs`), equal to the solo oracle's up to float rounding. A model the packed trainer does not
know trains one at a time instead, with one warning line saying so. Of the recipe's speed settings, a pack
uses none of ``channels_last`` and ``compile``: they change how fast, never what, an oracle computes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from clutune.clu.access import TrainAccess, crop_flip
from clutune.clu.compute import autocast, flush_denormals
from clutune.clu.packed import Gradients, Member, SGDSchedule, train_packed, unpackable_reason
from clutune.clu.training import predict_logits
from clutune.core.oracle import OracleCache, OracleOutputs, OracleRecipe, oracle_key, oracle_meta, train_oracle
from clutune.core.placement import placement
from clutune.data import Dataset
from clutune.guards.pack_memory import check_pack_fits
from clutune.models import build_model

DEFAULT_PACK = 16


@dataclass(frozen=True)
class MemberSpec:
    """One oracle to train: its seed and owned ids; ``key`` names its cache entry (default: the oracle key of
    this seed and owned set, that of the solo oracle)."""

    seed: int
    owned_ids: torch.Tensor
    key: str | None = None


def train_oracles(
    dataset: Dataset, members: Sequence[MemberSpec], recipe: OracleRecipe, pack: int = DEFAULT_PACK
) -> list[tuple[nn.Module, OracleOutputs]]:
    """Train ``members`` in packs of at most ``pack`` models; per member, in order, what ``train_oracle`` returns.

    The memory of the largest pack is checked first, before any model is built. An oracle ensemble calls this
    with its members; a Ray task calls :func:`train_oracle_pack` with one pack.
    """
    if not members:
        return []
    check_pack_fits(recipe.model, dataset.input_shape, dataset.num_classes, recipe.batch_size, min(pack, len(members)))
    out: list[tuple[nn.Module, OracleOutputs]] = []
    for start in range(0, len(members), pack):
        out += train_oracle_pack(dataset, members[start : start + pack], recipe)
    return out


def train_oracle_pack(
    dataset: Dataset,
    members: Sequence[MemberSpec],
    recipe: OracleRecipe,
    gradients: Callable[[nn.Module], Gradients] | None = None,
) -> list[tuple[nn.Module, OracleOutputs]]:
    """One pack, trained in one vectorised step per batch (or one at a time, with a warning, when its model
    cannot be packed). The global RNG is forked, as ``train_oracle`` forks it. Each member's ``seconds`` is its
    share of the pack's training time. ``gradients``: how a step's per-member gradients are computed
    (default: :func:`clutune.clu.packed.choose_gradients`'s rule; ``bench/packing.py`` passes each way)."""
    devices = [dataset.x_train.device] if dataset.x_train.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        with torch.device("meta"):  # the layers only, no memory and no draws
            reason = unpackable_reason(build_model(recipe.model, dataset.input_shape, dataset.num_classes))
    if reason is not None:
        warnings.warn(
            f"model {recipe.model.get('name', 'mlp')!r} cannot train packed: {reason}; its {len(members)} "
            "oracles train one at a time",
            RuntimeWarning,
            stacklevel=2,
        )
        return [train_oracle(dataset, spec.owned_ids, recipe, spec.seed, spec.key) for spec in members]
    with torch.random.fork_rng(devices=devices), flush_denormals(recipe.flush_denormal):
        built = [_build(dataset, spec, recipe) for spec in members]
        return _train_built(dataset, members, built, recipe, gradients)


def _build(dataset: Dataset, spec: MemberSpec, recipe: OracleRecipe) -> Member:
    """A member as ``_train_oracle`` starts one: model initialised from its seed, a door open to its owned ids
    only, and a generator of its own seed for its data order."""
    device = dataset.x_train.device
    owned = spec.owned_ids.sort().values.cpu()
    torch.manual_seed(spec.seed)
    model = build_model(recipe.model, dataset.input_shape, dataset.num_classes).to(device)
    access = TrainAccess(dataset.x_train, dataset.y_train, dataset.inputs, crop_flip if recipe.augment else None)
    access.block_all_but(owned)
    return Member(model, access, owned, torch.Generator().manual_seed(spec.seed), recipe.augment)


def _train_built(
    dataset: Dataset,
    specs: Sequence[MemberSpec],
    members: list[Member],
    recipe: OracleRecipe,
    gradients: Callable[[nn.Module], Gradients] | None,
) -> list[tuple[nn.Module, OracleOutputs]]:
    device = dataset.x_train.device
    schedule = SGDSchedule(
        recipe.epochs, recipe.batch_size, recipe.lr, recipe.momentum, recipe.weight_decay, recipe.schedule
    )
    training = [m for m in members if len(m.ids)]
    t0 = time.perf_counter()
    with autocast(recipe.precision, device):
        if training:
            train_packed(training, schedule, gradients)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - t0) / len(members)
        out = []
        for spec, member in zip(specs, members, strict=True):
            outputs = OracleOutputs(
                key=spec.key or oracle_key(dataset.fingerprint, member.ids, recipe, spec.seed),
                logits_train=predict_logits(member.model, dataset.x_train, dataset.inputs, recipe.eval_batch_size),
                logits_test=predict_logits(member.model, dataset.x_test, dataset.inputs, recipe.eval_batch_size),
                trained_ids=member.data.touched.nonzero().flatten(),
                seconds=seconds,
                samples_processed=recipe.epochs * len(member.ids),
                **placement(),
            )
            out.append((member.model, outputs))
    return out


def get_oracles(
    dataset: Dataset,
    members: Sequence[MemberSpec],
    recipe: OracleRecipe,
    cache: OracleCache,
    keep_weights: bool = False,
    pack: int = DEFAULT_PACK,
) -> list[OracleOutputs]:
    """Per member, in order, its cached outputs; the members not cached train as packs and are stored, each
    under its own key, as ``get_oracle`` stores a solo oracle."""
    keys = [spec.key or oracle_key(dataset.fingerprint, spec.owned_ids, recipe, spec.seed) for spec in members]
    found = [cache.load(key) for key in keys]
    missing = [MemberSpec(s.seed, s.owned_ids, k) for s, k, f in zip(members, keys, found, strict=True) if f is None]
    trained = iter(train_oracles(dataset, missing, recipe, pack))
    out = []
    for spec, hit in zip(members, found, strict=True):
        if hit is None:
            model, hit = next(trained)
            meta = oracle_meta(dataset, spec.owned_ids, recipe, spec.seed)
            cache.store(hit, meta, model.state_dict() if keep_weights else None)
        out.append(hit)
    return out
