"""Relapse: does a set unlearned earlier come back while the stream goes on learning?

A continual stream keeps training after an unlearn request, and a later learn request can re-teach what was
unlearned (new samples of an unlearned class, or features shared with it). So with ``evaluation.relapse.enabled``
every unlearned set (the ids of one unlearn request) is scored again at every request from its own on: the
model's accuracy on it, the oracle's, and the mean KL(oracle ‖ model) over it. The oracle of request k never saw
the set either, so it says how much of the set a model that truly forgot would get right at k.

Columns of request k:

- ``relapse_acc``: the worst over the sets unlearned before k of (model accuracy − oracle accuracy) on the set;
  NaN where no set was unlearned before k, or where the oracle policy gives k no oracle;
- ``relapse_sets``: every set unlearned at or before k as JSON text, one record per set (``unlearned_at``,
  ``set``, ``n``, ``acc``, ``oracle_acc``, ``kl``; the oracle's fields null where k has no oracle); a set's record
  at its own request starts its relapse curve. :mod:`clutune.platform.reports.relapse_report` turns them into
  ``relapse.csv`` and the curves.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch

from clutune.core.metrics import kl_per_sample, softmax64
from clutune.core.scenarios import Request

NAN = float("nan")


def set_label(request: Request) -> str:
    """A set as its request was written (``{"classes": [1]}``), compact, for tables and legends."""
    spec = request.spec.get("unlearn", request.spec) if isinstance(request.spec, dict) else request.spec
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def relapse_columns(
    requests: list[Request],
    k: int,
    logits_train: torch.Tensor,
    oracle_logits_train: torch.Tensor | None,
    labels: np.ndarray,
) -> dict[str, Any]:
    sets, worst = [], NAN
    for request in requests[: k + 1]:
        if request.kind != "unlearn":
            continue
        ids = request.ids
        y = labels[ids.numpy()]
        p_model = softmax64(logits_train[ids].numpy())
        acc = float((p_model.argmax(1) == y).mean()) if len(y) else NAN
        record: dict[str, Any] = {
            "unlearned_at": request.index,
            "set": set_label(request),
            "n": len(y),
            "acc": acc,
            "oracle_acc": None,
            "kl": None,
        }
        if oracle_logits_train is not None and len(y):
            p_oracle = softmax64(oracle_logits_train[ids].numpy())
            record["oracle_acc"] = float((p_oracle.argmax(1) == y).mean())
            record["kl"] = float(kl_per_sample(p_oracle, p_model).mean())
            if request.index < k:
                gap = acc - record["oracle_acc"]
                worst = gap if math.isnan(worst) else max(worst, gap)
        sets.append(record)
    return {"relapse_acc": worst, "relapse_sets": json.dumps(sets)}
