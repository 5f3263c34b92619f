"""DER++ (Buzzega et al. 2020): replay labels and the logits the model gave each sample when it was stored.

Learn loss = CE(D_L batch) + alpha * MSE(logits on a buffer batch, stored logits) + beta * CE(another buffer
batch). The stored logits carry the old function's dark knowledge, which labels alone lose. Logits are recorded
when an id enters the buffer (after the request, in eval mode, without gradient), and the buffer keeps them row
for row with the ids, so a purge drops both. Unlearn requests get plain gradient ascent on D_U.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clutune.clu.methods.base import hparam
from clutune.clu.methods.replay import (
    ReplayHparams,
    ReplayMethod,
    gradient_ascent,
    output_dim,
    replay_batch,
)


@dataclass
class DERppHparams(ReplayHparams):
    alpha: float = hparam(0.1, ge=0)  # logit matching
    beta: float = hparam(0.5, ge=0)  # label replay


class DERpp(ReplayMethod):
    name = "derpp"
    Hparams = DERppHparams
    hp: DERppHparams

    def buffer_logits_dim(self) -> int | None:
        return output_dim(self.model, self.data)

    def learn_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(self.model(x), y)
        first = replay_batch(self)
        if first is not None:
            xb, _, pos = first
            loss = loss + self.hp.alpha * F.mse_loss(self.model(xb), self.buffer.logits[pos].to(xb.device))
            xb, yb, _ = replay_batch(self)
            loss = loss + self.hp.beta * F.cross_entropy(self.model(xb), yb)
        return loss

    @torch.no_grad()
    def remember(self, ids: torch.Tensor) -> None:
        self.model.eval()
        logits = torch.cat([self.model(self.data.fetch(chunk, augment=False)[0]) for chunk in ids.split(1024)])
        self.buffer.add(ids, logits)

    def unlearn(self, request: Any) -> None:
        gradient_ascent(self, request.ids, self.hp.iters_per_unlearn, self.hp.unlearn_lr)
