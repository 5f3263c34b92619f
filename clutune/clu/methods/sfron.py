"""SFR-on (Huang et al., NeurIPS 2024), UG-CLU's unlearning-only predecessor, with ER as its learn step.

An unlearn request follows the authors' loop (``Classification/unlearn/sfron.py``), built from UG-CLU's parts:
1. the balanced saliency mask (D_U Fisher / buffer Fisher >= gamma) from the model as it stands;
2. one SGD optimizer (momentum shared by both kinds of step) at beta_R, cosine-annealed over the T iterations;
3. every iteration takes one remaining step on a buffer batch; every ``forget_freq``-th iteration first takes a
   forget step: masked, clipped ascent on -a_t * mean(w_i * CE_i) over a D_U batch, with a_t = alpha0 cosine-
   decayed and w_i ~ CE_i^-lam (samples still remembered get more ascent).
alpha0 = 0 skips the forget steps and the mask, so D_U is never read: the slow-steps-only control of
calibration.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clutune.clu.batches import cycle_batches
from clutune.clu.coefficients import cosine_decay, sample_weights
from clutune.clu.fastslow import fast_slow_iteration
from clutune.clu.methods.base import hparam
from clutune.clu.methods.replay import ReplayHparams, ReplayMethod, replay_batch
from clutune.clu.saliency import request_mask


@dataclass
class SFRonHparams(ReplayHparams):
    """Defaults are the authors' CIFAR-10 ones; they are far too strong for small models (calibration.md)."""

    beta_R: float = hparam(0.01, ge=0)  # the unlearn optimizer's learning rate (their retain_lr)
    forget_freq: int = hparam(5, ge=1)  # a forget step every forget_freq iterations
    alpha0: float = hparam(25.0, ge=0)  # forget coefficient at the first iteration
    lam: float = hparam(0.5, ge=0)
    gamma: float = hparam(1.0, gt=0)
    clip: float = hparam(7.0, ge=0)  # forget-step gradient norm clip; 0 disables
    use_mask: bool = True


class SFRon(ReplayMethod):
    name = "sfron"
    Hparams = SFRonHparams
    hp: SFRonHparams

    def unlearn(self, request: Any) -> None:
        hp = self.hp
        total = hp.iters_per_unlearn
        forget = hp.alpha0 > 0
        fetch = lambda ids: self.data.fetch(ids, augment=False)  # noqa: E731
        use_mask = forget and hp.use_mask
        mask = (
            request_mask(self.model, fetch, request.ids, self.buffer.ids, hp.batch_size, hp.gamma) if use_mask else None
        )
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=hp.beta_R, momentum=hp.momentum, weight_decay=hp.weight_decay)
        forget_batches = cycle_batches(request.ids, hp.batch_size, self.generator)
        remain = [self._remain_loss] if len(self.buffer) else []
        self.model.train()
        for t in range(total):
            lr = hp.beta_R * (1.0 + math.cos(math.pi * t / total)) / 2.0
            if forget and t % hp.forget_freq == 0:
                x, y = self.data.fetch(next(forget_batches), self.generator)
                a_t = cosine_decay(hp.alpha0, t, total)

                def forget_loss(x=x, y=y, a_t=a_t) -> torch.Tensor:
                    losses = F.cross_entropy(self.model(x), y, reduction="none")
                    return -a_t * (sample_weights(losses, hp.lam, "unlearn") * losses).mean()

                fast_slow_iteration(params, opt, forget_loss, remain, fast_lr=lr, slow_lr=lr, mask=mask, clip=hp.clip)
            elif remain:
                for group in opt.param_groups:
                    group["lr"] = lr
                opt.zero_grad(set_to_none=True)
                self._remain_loss().backward()
                opt.step()

    def _remain_loss(self) -> torch.Tensor:
        x, y, _ = replay_batch(self)
        return F.cross_entropy(self.model(x), y)
