"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to the weights that matter to D_U.

Saliency = |gradient of the forget loss summed over D_U| (the sum of batch-mean gradients in a fixed batch
order, eval mode, as SalUn's ``generate_mask.py``); the top ``mask_ratio`` share of all weights, ranked
globally across layers, gets mask 1. Then RL's loop runs with every gradient multiplied by the mask, so the
other weights move only through weight decay. Unlike UG-CLU's balanced mask, nothing here weighs how much a
weight matters to what remains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clutune.clu.batches import fixed_batches
from clutune.clu.methods.base import hparam
from clutune.clu.methods.rl import RL, RLHparams


@dataclass
class SalUnHparams(RLHparams):
    mask_ratio: float = hparam(0.5, ge=0, le=1)  # share of weights updated


class SalUn(RL):
    name = "salun"
    Hparams = SalUnHparams
    hp: SalUnHparams

    def gradient_mask(self, ids: torch.Tensor) -> list[torch.Tensor]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        total = [torch.zeros_like(p) for p in params]
        was_training = self.model.training
        self.model.eval()
        for batch in fixed_batches(ids, self.hp.batch_size):
            x, y = self.data.fetch(batch, augment=False)
            grads = torch.autograd.grad(F.cross_entropy(self.model(x), y), params, allow_unused=True)
            for t, g in zip(total, grads, strict=True):
                if g is not None:
                    t += g
        self.model.train(was_training)
        saliency = torch.cat([t.abs().flatten() for t in total])
        keep = torch.zeros_like(saliency)
        keep[saliency.topk(int(self.hp.mask_ratio * len(saliency))).indices] = 1.0
        return [m.view_as(p) for m, p in zip(keep.split([p.numel() for p in params]), params, strict=True)]
