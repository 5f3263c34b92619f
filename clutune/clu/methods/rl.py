"""RL (random labels; Golatkar et al. 2020, as in the SalUn and SFR-on code): relabel D_U, then fine-tune.

Each D_U sample gets one wrong label for the whole request, drawn uniformly from the other classes the buffer
still holds (after the purge, so a class that was unlearned whole is never a target). Every iteration trains
on a D_U batch with those labels concatenated with a buffer batch with true labels, so the model stops
recognising D_U without forgetting what remains. Learn requests use ER.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clutune.clu.batches import cycle_batches
from clutune.clu.methods.replay import ReplayHparams, ReplayMethod, output_dim, replay_batch


@dataclass
class RLHparams(ReplayHparams):
    unlearn_lr: float = 0.01  # descent on relabelled data is stable at learning rates, unlike plain ascent


class RL(ReplayMethod):
    name = "rl"
    Hparams = RLHparams
    hp: RLHparams

    def unlearn(self, request: Any) -> None:
        hp = self.hp
        if hp.iters_per_unlearn == 0 or hp.unlearn_lr == 0:
            return
        targets = self.random_labels(request.ids)
        mask = self.gradient_mask(request.ids)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt, sched = self.optimizer(hp.iters_per_unlearn, lr=hp.unlearn_lr)
        self.model.train()
        batches = cycle_batches(torch.arange(len(request.ids)), hp.batch_size, self.generator)
        for _ in range(hp.iters_per_unlearn):
            pos = next(batches)
            x, _ = self.data.fetch(request.ids[pos], self.generator)
            y = targets[pos].to(x.device)
            replay = replay_batch(self)
            if replay is not None:
                x, y = torch.cat([x, replay[0]]), torch.cat([y, replay[1]])
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(x), y).backward()
            if mask is not None:
                for p, m in zip(params, mask, strict=True):
                    if p.grad is not None:
                        p.grad.mul_(m)
            opt.step()
            sched.step()

    def gradient_mask(self, ids: torch.Tensor) -> list[torch.Tensor] | None:
        """Per-parameter gradient mask in ``model.parameters()`` order; RL updates every weight."""
        return None

    @torch.no_grad()
    def random_labels(self, ids: torch.Tensor) -> torch.Tensor:
        """One label per id, uniform over the buffer's classes other than the true one (all others if none)."""
        width = output_dim(self.model, self.data)
        allowed = torch.zeros(width, dtype=torch.bool)
        if len(self.buffer):
            allowed[self.data.fetch(self.buffer.ids, augment=False)[1].cpu()] = True
        true = self.data.fetch(ids, augment=False)[1].cpu()
        weights = allowed.float().expand(len(ids), width).clone()
        weights[torch.arange(len(ids)), true] = 0.0
        empty = weights.sum(1) == 0
        weights[empty] = 1.0
        weights[empty, true[empty]] = 0.0
        return torch.multinomial(weights, 1, generator=self.generator).flatten()
