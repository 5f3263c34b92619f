"""SCRUB (Kurmanji et al., NeurIPS 2023): a student pushed away from its teacher on D_U and kept close on the rest.

The teacher is a frozen copy of the model at the start of the unlearn request. Each iteration of the first
``max_fraction`` of the request takes a max-step (ascent on KL(teacher || student) at temperature kd_T over a
D_U batch); every iteration then takes a min-step on a buffer batch (CE + alpha_kl * KL). The max-steps stop
early, as SCRUB's ``msteps`` do, so the last min-steps repair what the max-steps broke. One optimizer serves both.
Learn requests use ER.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.batches import cycle_batches
from clutune.clu.methods.base import hparam
from clutune.clu.methods.lwf import frozen_copy
from clutune.clu.methods.replay import ReplayHparams, ReplayMethod, replay_batch


@dataclass
class SCRUBHparams(ReplayHparams):
    unlearn_lr: float = 0.01
    kd_T: float = hparam(4.0, gt=0)
    alpha_kl: float = hparam(1.0, ge=0)  # weight of the KL term in min-steps (CE has weight 1)
    max_fraction: float = hparam(0.5, ge=0, le=1)  # share of the request's iterations that take a max-step


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) * T^2, averaged over the batch (SCRUB's DistillKL)."""
    return F.kl_div(F.log_softmax(student / T, 1), F.softmax(teacher / T, 1), reduction="batchmean") * T * T


class SCRUB(ReplayMethod):
    name = "scrub"
    Hparams = SCRUBHparams
    hp: SCRUBHparams
    teacher: nn.Module | None = None  # the latest unlearn request's teacher

    def unlearn(self, request: Any) -> None:
        hp = self.hp
        if hp.iters_per_unlearn == 0 or hp.unlearn_lr == 0:
            return
        self.teacher = frozen_copy(self.model)
        opt, sched = self.optimizer(hp.iters_per_unlearn, lr=hp.unlearn_lr)
        forget_batches = cycle_batches(request.ids, hp.batch_size, self.generator)
        n_max = round(hp.max_fraction * hp.iters_per_unlearn)
        self.model.train()
        for t in range(hp.iters_per_unlearn):
            if t < n_max:
                x, _ = self.data.fetch(next(forget_batches), self.generator)
                opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    target = self.teacher(x)
                (-distill_kl(self.model(x), target, hp.kd_T)).backward()
                opt.step()
            replay = replay_batch(self)
            if replay is not None:
                x, y, _ = replay
                opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    target = self.teacher(x)
                logits = self.model(x)
                (F.cross_entropy(logits, y) + hp.alpha_kl * distill_kl(logits, target, hp.kd_T)).backward()
                opt.step()
            sched.step()
