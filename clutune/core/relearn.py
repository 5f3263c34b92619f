"""The relearning attack: does a forgotten set come back after a few fine-tuning steps on retained data alone?

A model that only hides what it unlearned (its features intact, its outputs pushed away) gives the forget set back
to an attacker who fine-tunes it on data it is allowed to keep; a model retrained without the set cannot. So after
each unlearn request (``evaluation.relearn.steps`` > 0) two copies go through the same attack: a deep copy of the
method's model and a copy of the request's oracle, each fine-tuned with plain SGD (``lr``, no momentum) for
``steps`` steps on the same batches. The forget set (the ids this request unlearned) is scored on all four models:

- ``relearn_acc`` / ``oracle_relearn_acc``: the attacked method copy's / oracle copy's accuracy on the forget set;
- ``relearn_recovery`` / ``oracle_relearn_recovery``: that accuracy minus the same model's before the attack;
- ``relearn_gap`` = ``relearn_recovery`` − ``oracle_relearn_recovery``: the forget accuracy the attack brings back
  beyond what it brings back to a model that never saw the set. Near 0 for exact unlearning; positive when the
  forgetting was only on the surface. A method that never forgot has nothing to recover: that shows in
  ``gap_unlearn`` and the membership attacks, not here.

The batches are the attacker's retained data: ids drawn from every id owned after the request (the remain set,
the attacker's strongest choice, and the same for every method, whatever it buffers), from a generator seeded by
``evaluation.relearn.seed`` and the request's index, so every method, seed and the oracle meet the same batches.
They are fetched once through a fork of the method's own data door (:meth:`TrainAccess.fork`): the unlearned ids
stay refused, and the method's audit is left as it was. The copies train inside a forked RNG; the method's model,
optimizer, buffer and generators are never touched.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.access import TrainAccess
from clutune.clu.batches import cycle_batches
from clutune.clu.compute import autocast
from clutune.clu.training import predict_logits
from clutune.core.config import Config, RelearnConfig
from clutune.core.oracle import OracleCache, OracleRecipe, train_oracle
from clutune.data import Dataset
from clutune.models import build_model

NAN = float("nan")
COLUMNS = ("relearn_acc", "oracle_relearn_acc", "relearn_recovery", "oracle_relearn_recovery", "relearn_gap")


def keeps_oracle_weights(config: Config) -> bool:
    """Whether oracles are cached with their weights: asked for, or needed by the relearning attack."""
    return config.oracle.keep_weights or config.evaluation.relearn.steps > 0


def attack_batches(
    door: TrainAccess, retained: torch.Tensor, cfg: RelearnConfig, request_index: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The attack's ``steps`` batches of retained data, fetched through ``door`` (a fork of the method's)."""
    seed = int(np.random.SeedSequence([cfg.seed, request_index]).generate_state(1)[0])
    batches = cycle_batches(retained.cpu(), cfg.batch_size, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return [door.fetch(next(batches)) for _ in range(cfg.steps)]


def relearned(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float, precision: str
) -> nn.Module:
    """A deep copy of ``model`` after one plain SGD step per batch; ``model`` itself is left as it was."""
    attacked = copy.deepcopy(model)
    attacked.train()
    opt = torch.optim.SGD(attacked.parameters(), lr=lr)
    device = next(attacked.parameters()).device
    with autocast(precision, device):
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(attacked(x), y).backward()
            opt.step()
    attacked.eval()
    return attacked


def forget_accuracy(model: nn.Module, dataset: Dataset, ids: torch.Tensor, to_inputs, batch_size: int) -> float:
    if len(ids) == 0:
        return NAN
    dev_ids = ids.to(dataset.x_train.device)
    with torch.no_grad():
        logits = predict_logits(model, dataset.x_train[dev_ids], to_inputs, batch_size)
    return float((logits.argmax(1) == dataset.y_train[dev_ids].cpu()).float().mean())


def oracle_model(
    dataset: Dataset, owned_ids: torch.Tensor, recipe: OracleRecipe, seed: int, cache: OracleCache, key: str
) -> nn.Module:
    """The oracle of ``key`` as a model: its cached weights, or, where it was cached without them, trained again
    (training is deterministic for a seed on a device) and its weights added to the entry."""
    if cache.has_weights(key):
        with torch.random.fork_rng(devices=_cuda(dataset)):  # the initialisation's draws, overwritten at once
            model = build_model(recipe.model, dataset.input_shape, dataset.num_classes).to(dataset.x_train.device)
        model.load_state_dict(cache.load_weights(key))
        return model.eval()
    model, _ = train_oracle(dataset, owned_ids, recipe, seed, key)
    cache.store_weights(key, model.state_dict())
    return model.eval()


def relearn_columns(
    model: nn.Module,
    oracle: nn.Module | None,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    forget: torch.Tensor,
    dataset: Dataset,
    to_inputs,
    cfg: RelearnConfig,
    precision: str,
    eval_batch_size: int,
) -> dict[str, float]:
    """The columns the module's docstring defines; the oracle's, and the gap, NaN where the request has none."""

    def scored(net: nn.Module) -> tuple[float, float]:
        """(forget accuracy after the attack, its recovery: after minus before)."""
        before = forget_accuracy(net, dataset, forget, to_inputs, eval_batch_size)
        after = forget_accuracy(relearned(net, batches, cfg.lr, precision), dataset, forget, to_inputs, eval_batch_size)
        return after, after - before

    with torch.random.fork_rng(devices=_cuda(dataset)):
        acc, recovery = scored(model)
        oracle_acc, oracle_recovery = (NAN, NAN) if oracle is None else scored(oracle)
    return {
        "relearn_acc": acc,
        "oracle_relearn_acc": oracle_acc,
        "relearn_recovery": recovery,
        "oracle_relearn_recovery": oracle_recovery,
        "relearn_gap": recovery - oracle_recovery,
    }


def _cuda(dataset: Dataset) -> list[torch.device]:
    """The devices whose RNG a forked RNG must also restore."""
    return [dataset.x_train.device] if dataset.x_train.device.type == "cuda" else []


def no_relearn_columns() -> dict[str, float]:
    """A learn request's columns: there is no forget set to attack."""
    return dict.fromkeys(COLUMNS, NAN)


def attack_cost(config: Config, kinds: list[str], oracle_at: list[bool]) -> str | None:
    """The attack's work per run, known before any: the line a command prints first; None when it is off."""
    cfg = config.evaluation.relearn
    if cfg.steps == 0:
        return None
    unlearns = sum(1 for kind in kinds if kind == "unlearn")
    with_oracle = sum(1 for kind, scored in zip(kinds, oracle_at, strict=True) if kind == "unlearn" and scored)
    copies = unlearns + with_oracle
    samples = copies * cfg.steps * cfg.batch_size
    return (
        f"relearning attack: {unlearns} unlearn request(s) x {cfg.steps} steps of {cfg.batch_size} on the method's "
        f"copy, {with_oracle} on the oracle's: {copies * cfg.steps} SGD steps ({samples} samples) per run"
    )
