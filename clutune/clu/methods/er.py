"""ER (experience replay): every learn step trains on a D_L batch concatenated with a buffer batch.

Unlearn requests get plain gradient ascent on D_U (no replay interleaved), so ER stays the plain continual-learning
baseline that UG-CLU's replay-based unlearning is measured against.
"""

from __future__ import annotations

from typing import Any

from clutune.clu.methods.replay import ReplayHparams, ReplayMethod, gradient_ascent


class ER(ReplayMethod):
    name = "er"
    Hparams = ReplayHparams

    def unlearn(self, request: Any) -> None:
        gradient_ascent(self, request.ids, self.hp.iters_per_unlearn, self.hp.unlearn_lr)
