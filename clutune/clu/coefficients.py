"""Adaptive coefficients: a cosine-decayed step size per request and loss-dependent weights per sample.

The decay plays the role of the epsilon -> 0 in the weighted-ERM reading of UG-CLU: the task term fades as
the request proceeds. The per-sample weights spend the step where it is still needed: unlearning pushes
hardest on samples still remembered (low loss), learning on samples not yet learned (high loss).
"""

from __future__ import annotations

import math

import torch


def cosine_decay(alpha0: float, t: int, total: int, decay: bool = True) -> float:
    """alpha0 * (1 + cos(pi t / T)) / 2, or alpha0 throughout when decay is off."""
    if not decay or total <= 0:
        return alpha0
    return alpha0 * (1.0 + math.cos(math.pi * t / total)) / 2.0


@torch.no_grad()
def sample_weights(losses: torch.Tensor, lam: float, kind: str) -> torch.Tensor:
    """Weights summing to the batch size: unlearn w ~ loss^-lam, learn w ~ loss^+lam; lam = 0 is uniform."""
    powered = losses.detach().clamp_min(0) ** lam + 1e-15
    raw = 1.0 / powered if kind == "unlearn" else powered
    return raw * (len(losses) / raw.sum())
