"""Online EWC (Schwarz et al. 2018, the Mammoth ``ewc_on`` form): a quadratic pull toward past weights.

After each learn request the diagonal empirical Fisher of D_L (mean over samples of the squared per-sample
gradient of the CE at the true label) is folded into a running Fisher, F <- gamma_ewc * F + F_new, and the weights
are snapshotted. Learn loss = CE(D_L batch) + lambda_ewc * sum_p F_p (theta_p - theta*_p)^2. The penalty
protects what was learned without storing any sample. Unlearn requests get plain gradient ascent on D_U, and do
not touch the Fisher: the baseline has no way to subtract a sample's contribution from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from clutune.clu.batches import fixed_batches
from clutune.clu.methods.base import BaseHparams, Method, hparam
from clutune.clu.methods.replay import gradient_ascent, supervised_epochs


@dataclass
class EWCHparams(BaseHparams):
    lambda_ewc: float = hparam(100.0, ge=0)
    # decay of the running Fisher at each new snapshot; 1 keeps every past request
    gamma_ewc: float = hparam(1.0, ge=0, le=1)
    unlearn_lr: float = hparam(1e-4, ge=0)


class EWC(Method):
    name = "ewc"
    Hparams = EWCHparams
    hp: EWCHparams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def penalty(self) -> torch.Tensor:
        """sum_p F_p (theta_p - theta*_p)^2; zero before the first snapshot."""
        total = torch.zeros((), device=self.data.device)
        for n, p in self.model.named_parameters():
            if n in self.fisher:
                total = total + (self.fisher[n] * (p - self.anchor[n]) ** 2).sum()
        return total

    def learn(self, request: Any) -> None:
        def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(self.model(x), y) + self.hp.lambda_ewc * self.penalty()

        supervised_epochs(self, request.ids, loss)
        fresh = self.empirical_fisher(request.ids)
        for n, f in fresh.items():
            self.fisher[n] = self.hp.gamma_ewc * self.fisher[n] + f if n in self.fisher else f
        self.anchor = {n: p.detach().clone() for n, p in self.model.named_parameters() if n in fresh}

    def empirical_fisher(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean squared per-sample gradient over ``ids`` (vectorised with torch.func), in eval mode."""
        params = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}
        buffers = dict(self.model.named_buffers())

        def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = functional_call(self.model, (p, buffers), (x.unsqueeze(0),))
            return F.cross_entropy(out, y.unsqueeze(0))

        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        was_training = self.model.training
        self.model.eval()
        for batch in fixed_batches(ids, self.hp.batch_size):
            x, y = self.data.fetch(batch, augment=False)
            for n, g in per_sample(params, x, y).items():
                total[n] += (g**2).sum(0)
        self.model.train(was_training)
        return {n: t / max(1, len(ids)) for n, t in total.items()}

    def unlearn(self, request: Any) -> None:
        gradient_ascent(self, request.ids, self.hp.iters_per_unlearn, self.hp.unlearn_lr)

    def extra_state(self) -> dict[str, Any]:
        return {
            "fisher": {n: f.clone() for n, f in self.fisher.items()},
            "anchor": {n: a.clone() for n, a in self.anchor.items()},
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.fisher = {n: f.clone() for n, f in state["fisher"].items()}
        self.anchor = {n: a.clone() for n, a in state["anchor"].items()}
