"""Finetune: plain SGD on D_L to learn, plain gradient ascent on D_U to unlearn. No memory of the past."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from clutune.clu.methods.base import BaseHparams, Method, hparam
from clutune.clu.methods.replay import gradient_ascent, supervised_epochs


@dataclass
class FinetuneHparams(BaseHparams):
    # plain ascent diverges fast at larger rates; 0 turns unlearn requests into no-ops
    unlearn_lr: float = hparam(1e-4, ge=0)


class Finetune(Method):
    name = "finetune"
    Hparams = FinetuneHparams
    hp: FinetuneHparams

    def learn(self, request) -> None:
        supervised_epochs(self, request.ids, lambda x, y: F.cross_entropy(self.model(x), y))

    def unlearn(self, request) -> None:
        gradient_ascent(self, request.ids, self.hp.iters_per_unlearn, self.hp.unlearn_lr)
