"""Pieces the baselines share, kept in one place so that every baseline spends its budget the same way.

- :func:`supervised_epochs`: ``epochs_per_learn`` shuffled passes over D_L with a caller-supplied loss, on the
  method's SGD + cosine optimizer; every learn request of a baseline goes through it.
- :class:`ReplayMethod`: experience replay as the learn step (a D_L batch concatenated with a buffer batch),
  the learn half of every unlearning baseline, so they differ only where they claim to (unlearning).
- :func:`gradient_ascent`: plain ascent on D_U, the unlearn step of the continual-learning baselines.

A method of your own may call every function here: they spend the shared budget (:class:`BaseHparams`) the way
the built-in methods do, so a comparison measures the method, not a different number of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.access import TrainAccess
from clutune.clu.batches import cycle_batches
from clutune.clu.methods.base import BaseHparams, Method, hparam
from clutune.clu.training import sgd_epochs, steps_per_epoch

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def output_dim(model: nn.Module, data: TrainAccess) -> int:
    """Number of model outputs, from one forward pass on an all-zero input: a method that keeps per-class
    state can size it without reading a sample (and so without touching an id it may not own)."""
    probe = data.zero_inputs()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        width = int(model(probe).shape[-1])
    model.train(was_training)
    return width


def sgd(
    method: Method, steps: int, params: Iterable[nn.Parameter] | None = None, lr: float | None = None
) -> tuple[torch.optim.Optimizer, Any]:
    """The method's optimizer (SGD + cosine over ``steps``), over ``params`` when only part of the model trains
    (a head, a masked subset): the same rule and hyperparameters as :meth:`Method.optimizer`, so budgets match."""
    if params is None:
        return method.optimizer(steps, lr)
    hp = method.hp
    opt = torch.optim.SGD(params, lr=hp.lr if lr is None else lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))


def supervised_epochs(
    method: Method, ids: torch.Tensor, loss: Loss, params: Iterable[nn.Parameter] | None = None
) -> None:
    """``epochs_per_learn`` shuffled passes over ``ids`` at ``batch_size``, one SGD step per batch.

    The learn step of every built-in baseline: give it your own ``loss(x, y)`` (which may add a replay batch or a
    penalty) and the budget stays the one every method spends. ``params`` default to the whole model's. Batches
    are fetched through the data door with the method's generator, so the run stays deterministic.
    """
    hp = method.hp
    opt, sched = sgd(method, hp.epochs_per_learn * steps_per_epoch(len(ids), hp.batch_size), params)
    sgd_epochs(method.model, method.data, ids, hp.epochs_per_learn, hp.batch_size, opt, sched, method.generator, loss)


def replay_batch(
    method: Method, pool: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """A replay batch: inputs, labels and buffer *positions* of up to ``batch_size`` entries drawn from the
    positions in ``pool`` (default: the whole buffer); None without a buffer or with nothing to draw.

    Positions, not ids, come back because a method with a logits slot needs the rows that go with the batch
    (``method.buffer.logits[pos]``); the ids are ``method.buffer.ids[pos]``.
    """
    buffer = method.buffer
    if buffer is None:
        return None
    pool = torch.arange(len(buffer)) if pool is None else pool
    if len(pool) == 0:
        return None
    pos = pool[torch.randperm(len(pool), generator=method.generator)[: method.hp.batch_size]]
    x, y = method.data.fetch(buffer.ids[pos], method.generator)
    return x, y, pos


def gradient_ascent(method: Method, ids: torch.Tensor, iters: int, lr: float) -> None:
    """``iters`` steps of ascent on the mean cross-entropy of ``ids`` (D_U) at ``lr``, with the learn
    optimizer's momentum and cosine schedule: the simplest unlearn step, and the one the continual-learning
    baselines use. Call it from :meth:`Method.unlearn`, while D_U is still fetchable; ``lr`` or ``iters`` 0 is a
    no-op."""
    if lr == 0 or iters == 0:
        return
    opt, sched = method.optimizer(iters, lr=lr)
    method.model.train()
    batches = cycle_batches(ids, method.hp.batch_size, method.generator)
    for _ in range(iters):
        x, y = method.data.fetch(next(batches), method.generator)
        opt.zero_grad(set_to_none=True)
        (-F.cross_entropy(method.model(x), y)).backward()
        opt.step()
        sched.step()


@dataclass
class ReplayHparams(BaseHparams):
    """The shared budget plus a replay buffer (``buffer_size`` ids) and the rate of plain ascent on D_U."""

    buffer_size: int = hparam(5000, ge=0)
    unlearn_lr: float = hparam(1e-4, ge=0)  # plain ascent diverges fast at larger rates; 0 turns ascent into a no-op


class ReplayMethod(Method):
    """Learns by experience replay; subclasses change the loss (:meth:`learn_loss`) or what is stored."""

    hp: ReplayHparams

    def learn(self, request: Any) -> None:
        """:func:`supervised_epochs` over D_L with :meth:`learn_loss`, then D_L offered to the buffer."""
        supervised_epochs(self, request.ids, self.learn_loss)
        self.remember(request.ids)

    def learn_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """CE over the D_L batch and a buffer batch of the same size, concatenated (ER as in Mammoth)."""
        replay = replay_batch(self)
        if replay is not None:
            x, y = torch.cat([x, replay[0]]), torch.cat([y, replay[1]])
        return F.cross_entropy(self.model(x), y)

    def remember(self, ids: torch.Tensor) -> None:
        """Offer D_L to the reservoir once the request is over (as UG-CLU does)."""
        self.buffer.add(ids)
