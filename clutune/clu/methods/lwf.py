"""LwF (Li & Hoiem 2016) in the class-incremental form of PyCIL/FACIL: distil the old classes, store nothing.

At each learn request a frozen copy of the model as it stood before the request is the teacher. Learn loss =
CE(D_L batch) + alpha_kd * T^2 * KL(softmax(teacher / T) || softmax(student / T)), both restricted to the classes
learned before this request: distilling the new classes too would pull them toward the teacher's ignorance of
them. The first request has no old classes and so no teacher. Unlearn requests get plain gradient ascent on D_U.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.methods.base import BaseHparams, Method, hparam
from clutune.clu.methods.replay import gradient_ascent, output_dim, supervised_epochs


@dataclass
class LwFHparams(BaseHparams):
    alpha_kd: float = hparam(1.0, ge=0)
    T: float = hparam(2.0, gt=0)
    unlearn_lr: float = hparam(1e-4, ge=0)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A teacher: an eval-mode copy whose parameters no optimizer step can move."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class LwF(Method):
    name = "lwf"
    Hparams = LwFHparams
    hp: LwFHparams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known = torch.zeros(output_dim(self.model, self.data), dtype=torch.bool)  # classes learned so far
        self.teacher: nn.Module | None = None  # the latest learn request's teacher

    def learn(self, request: Any) -> None:
        old = self.known.nonzero().flatten().to(self.data.device)
        self.teacher = frozen_copy(self.model) if len(old) else None
        T = self.hp.T

        def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            self.known[y.cpu()] = True
            logits = self.model(x)
            ce = F.cross_entropy(logits, y)
            if self.teacher is None:
                return ce
            with torch.no_grad():
                target = F.softmax(self.teacher(x)[:, old] / T, dim=1)
            kd = F.kl_div(F.log_softmax(logits[:, old] / T, dim=1), target, reduction="batchmean")
            return ce + self.hp.alpha_kd * T * T * kd

        supervised_epochs(self, request.ids, loss)

    def unlearn(self, request: Any) -> None:
        gradient_ascent(self, request.ids, self.hp.iters_per_unlearn, self.hp.unlearn_lr)

    def extra_state(self) -> dict[str, Any]:
        return {"known": self.known.clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.known = state["known"].clone()
