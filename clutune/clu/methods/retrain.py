"""Retrain: the oracle's recipe run as a method, from scratch at every request, with its own seed.

It is exact by construction, so its distance to the oracle is the noise floor of the metrics: how far two
exact retrains with different seeds land from each other. A method that gets below it is not unlearning
better, it is within noise. The defaults are clutune.core.config.OracleConfig's recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from clutune.clu.methods.base import BaseHparams, Method, hparam
from clutune.clu.training import sgd_epochs, steps_per_epoch


@dataclass
class RetrainHparams(BaseHparams):
    epochs: int = hparam(60, ge=1)
    lr: float = 0.05
    batch_size: int = 64


class Retrain(Method):
    name = "retrain"
    Hparams = RetrainHparams
    follows_oracle = ("epochs", "lr", "batch_size", "momentum", "weight_decay")
    exact = True
    hp: RetrainHparams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owned = torch.empty(0, dtype=torch.int64)

    def learn(self, request: Any) -> None:
        self.owned = torch.cat([self.owned, request.ids.cpu()]).sort().values
        self.retrain()

    def unlearn(self, request: Any) -> None:
        self.owned = self.owned[~torch.isin(self.owned, request.ids.cpu())]
        self.retrain()

    def retrain(self) -> None:
        """Fresh weights (seeded from the method's generator) trained on exactly the owned ids."""
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
        for module in self.model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        hp = self.hp
        opt, sched = self.optimizer(hp.epochs * steps_per_epoch(len(self.owned), hp.batch_size))
        if len(self.owned):
            sgd_epochs(self.model, self.data, self.owned, hp.epochs, hp.batch_size, opt, sched, self.generator)

    def extra_state(self) -> dict[str, Any]:
        return {"owned": self.owned.clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.owned = state["owned"].clone()
