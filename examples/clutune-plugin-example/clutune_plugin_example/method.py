"""example_er: experience replay whose unlearning repairs what the ascent damaged.

Learn requests are clutune's ER (a D_L batch concatenated with a buffer batch). An unlearn request runs plain
gradient ascent on D_U, then ``repair_iters`` descent steps on batches from the buffer, which clutune has
already purged of D_U: the retained classes recover what the ascent cost them, and no unlearned sample is
touched after its request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F

from clutune.clu.methods.base import hparam
from clutune.clu.methods.replay import ReplayHparams, ReplayMethod, gradient_ascent, replay_batch


@dataclass
class ExampleERHparams(ReplayHparams):
    repair_iters: int = hparam(20, ge=0)  # descent steps on the buffer after each unlearn request; 0 is plain ER
    repair_lr: float = hparam(0.01, ge=0)


class ExampleER(ReplayMethod):
    name = "example_er"  # must equal the entry point name
    Hparams = ExampleERHparams
    search_space = "search_space.yaml"  # package data beside this module
    tuned_defaults = "tuned"  # tuned/<dataset>.yaml, one per dataset

    def unlearn(self, request: Any) -> None:
        gradient_ascent(self, request.ids, self.hp.iters_per_unlearn, self.hp.unlearn_lr)
        self.repair()

    def repair(self) -> None:
        """Descent on buffer batches (the buffer never holds an unlearned id: the runner purged it)."""
        if self.hp.repair_iters == 0 or self.hp.repair_lr == 0 or len(self.buffer) == 0:
            return
        opt, sched = self.optimizer(self.hp.repair_iters, lr=self.hp.repair_lr)
        self.model.train()
        for _ in range(self.hp.repair_iters):
            x, y, _ = replay_batch(self)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(x), y).backward()
            opt.step()
            sched.step()
