"""UG-CLU (Huang et al., arXiv 2505.15178): learning and unlearning as one gradient update toward the oracle.

Read top to bottom, one request goes like this (spec Part A):
1. unlearn only: the runner has already purged D_U from the buffer, so no remaining step ever replays it;
2. the balanced saliency mask is computed from the model as it stands (task Fisher / buffer Fisher >= gamma);
3. a fresh SGD optimizer (momentum shared by fast and slow steps) with cosine annealing over the request;
4. T iterations, each: a masked fast step on a task batch with loss sign * a_t * mean(w_i * CE_i)
   (descent on D_L, ascent on D_U; a_t cosine-decayed from alpha0, w_i adaptive per sample), then K_in slow
   steps on buffer batches at beta_R, then the outer interpolation with eta_out;
5. learn only: D_L's ids are offered to the reservoir.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clutune.clu.batches import cycle_batches, epoch_batches
from clutune.clu.coefficients import cosine_decay, sample_weights
from clutune.clu.fastslow import fast_slow_iteration
from clutune.clu.methods.base import BaseHparams, Method, hparam
from clutune.clu.saliency import request_mask


@dataclass
class UGCLUHparams(BaseHparams):
    """Names match the search spaces. Defaults are the spec's CIFAR-10 ones; per-dataset values live in
    clutune/presets/best/ugclu-<dataset>.yaml."""

    lr: float | None = None  # fast-step learning rate; None ties it to beta_R (the single-optimizer reading)
    gamma: float = hparam(1.0, gt=0)  # saliency threshold on F_task / F_R
    beta_R: float = hparam(0.01, ge=0)  # slow-step learning rate
    K_in: int = hparam(5, ge=0)  # slow steps per fast step
    buffer_size: int = hparam(5000, ge=0)
    eta_out: float = hparam(1.0, gt=0, le=1)  # outer interpolation toward the slow weights; 1 takes them
    lam: float = hparam(0.5, ge=0)  # per-sample weight temperature; 0 is uniform
    alpha0_learn: float = hparam(1.0, ge=0)
    alpha0_unlearn: float = hparam(25.0, ge=0)
    clip: float = hparam(7.0, ge=0)  # fast-step gradient norm clip; 0 disables
    use_mask: bool = True
    decay: bool = True  # cosine decay of a_t over the request


class UGCLU(Method):
    name = "ugclu"
    Hparams = UGCLUHparams
    hp: UGCLUHparams

    def learn(self, request) -> None:
        n_batches = math.ceil(len(request.ids) / self.hp.batch_size)
        total = self.hp.epochs_per_learn * n_batches
        batches = (
            b
            for _ in range(self.hp.epochs_per_learn)
            for b in epoch_batches(request.ids, self.hp.batch_size, self.generator)
        )
        self._request(request.ids, batches, total, "learn")
        self.buffer.add(request.ids)

    def unlearn(self, request) -> None:
        total = self.hp.iters_per_unlearn
        self._request(request.ids, cycle_batches(request.ids, self.hp.batch_size, self.generator), total, "unlearn")

    def _request(self, task_ids: torch.Tensor, task_batches, total: int, kind: str) -> None:
        hp = self.hp
        params = [p for p in self.model.parameters() if p.requires_grad]
        mask = self.saliency_mask(task_ids) if hp.use_mask else None
        fast_lr0 = hp.beta_R if hp.lr is None else hp.lr
        opt = torch.optim.SGD(params, lr=hp.beta_R, momentum=hp.momentum, weight_decay=hp.weight_decay)
        sign = 1.0 if kind == "learn" else -1.0
        alpha0 = hp.alpha0_learn if kind == "learn" else hp.alpha0_unlearn
        has_remain = self.buffer is not None and len(self.buffer) > 0
        self.model.train()
        for t in range(total):
            ids = next(task_batches)
            x, y = self.data.fetch(ids, self.generator)
            a_t = cosine_decay(alpha0, t, total, hp.decay)
            schedule = (1.0 + math.cos(math.pi * t / total)) / 2.0  # the optimizer's cosine annealing

            def fast_loss(x=x, y=y, a_t=a_t) -> torch.Tensor:
                losses = F.cross_entropy(self.model(x), y, reduction="none")
                w = sample_weights(losses, hp.lam, kind)
                return sign * a_t * (w * losses).mean()

            slow = [self._slow_loss for _ in range(hp.K_in)] if has_remain else []
            fast_slow_iteration(
                params,
                opt,
                fast_loss,
                slow,
                fast_lr=fast_lr0 * schedule,
                slow_lr=hp.beta_R * schedule,
                mask=mask,
                clip=hp.clip,
                eta_out=hp.eta_out if has_remain else 1.0,
            )

    def _slow_loss(self) -> torch.Tensor:
        ids = self.buffer.ids[self.buffer.sample(self.hp.batch_size, self.generator)]
        x, y = self.data.fetch(ids, self.generator)
        return F.cross_entropy(self.model(x), y)

    def saliency_mask(self, task_ids: torch.Tensor) -> list[torch.Tensor] | None:
        """Balanced mask against the buffer (after the purge), recomputed from the model as it stands."""
        remain = self.buffer.ids if self.buffer is not None else torch.empty(0, dtype=torch.int64)
        fetch = lambda ids: self.data.fetch(ids, augment=False)  # noqa: E731
        return request_mask(self.model, fetch, task_ids, remain, self.hp.batch_size, self.hp.gamma)
