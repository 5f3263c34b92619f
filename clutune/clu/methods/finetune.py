"""Finetune: plain SGD on D_L to learn, plain gradient ascent on D_U to unlearn. No memory of the past."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from clutune.clu.batches import cycle_batches
from clutune.clu.methods import register
from clutune.clu.methods.base import BaseHparams, Method
from clutune.clu.training import sgd_epochs, steps_per_epoch
from clutune.errors import UserError


@dataclass
class FinetuneHparams(BaseHparams):
    unlearn_lr: float = 1e-4  # plain ascent diverges fast at larger rates; 0 turns unlearn requests into no-ops

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if self.unlearn_lr < 0:
            raise UserError(f"config key '{prefix}.unlearn_lr': must be >= 0")


@register
class Finetune(Method):
    name = "finetune"
    Hparams = FinetuneHparams
    hp: FinetuneHparams

    def learn(self, request) -> None:
        hp = self.hp
        opt, sched = self.optimizer(hp.epochs_per_learn * steps_per_epoch(len(request.ids), hp.batch_size))
        sgd_epochs(self.model, self.data, request.ids, hp.epochs_per_learn, hp.batch_size, opt, sched, self.generator)

    def unlearn(self, request) -> None:
        if self.hp.unlearn_lr == 0 or self.hp.iters_per_unlearn == 0:
            return
        opt, sched = self.optimizer(self.hp.iters_per_unlearn, lr=self.hp.unlearn_lr)
        self.model.train()
        batches = cycle_batches(request.ids, self.hp.batch_size, self.generator)
        for _ in range(self.hp.iters_per_unlearn):
            x, y = self.data.fetch(next(batches), self.generator)
            opt.zero_grad(set_to_none=True)
            (-F.cross_entropy(self.model(x), y)).backward()
            opt.step()
            sched.step()
