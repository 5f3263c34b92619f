"""Balanced weight saliency: update a weight only where it matters more to the task data than to what remains.

F_task and F_R are diagonal Fisher estimates (mean squared batch gradients) over whole passes in a fixed
batch order, so the mask never depends on shuffling. The mask is recomputed for every request from the model
as it stands; a mask from another model or request is never reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.batches import fixed_batches

Mask = dict[str, torch.Tensor]


def fisher_diagonal(
    model: nn.Module,
    batches: Sequence[torch.Tensor],
    fetch: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Mean over ``batches`` of (d mean-CE / d p)^2, in eval mode (no dropout or batch-norm updates)."""
    was_training = model.training
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for ids in batches:
        x, y = fetch(ids)
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()), allow_unused=True)
        for (n, _), g in zip(params.items(), grads, strict=True):
            if g is not None:
                total[n] += g.detach() ** 2
    model.train(was_training)
    return {n: t / max(1, len(batches)) for n, t in total.items()}


def balanced_mask(f_task: dict[str, torch.Tensor], f_remain: dict[str, torch.Tensor], gamma: float) -> Mask:
    """1 where (F_task + 1e-15) / (F_R + 1e-15) >= gamma; one gamma for every layer (no per-layer scaling)."""
    return {n: ((f_task[n] + 1e-15) / (f_remain[n] + 1e-15) >= gamma).to(f_task[n].dtype) for n in f_task}


def mask_fraction(mask: Mask) -> float:
    """Share of weights the mask lets through, for logging and sanity checks."""
    kept = sum(float(m.sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    return kept / total if total else 1.0


def request_mask(
    model: nn.Module,
    fetch: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    task_ids: torch.Tensor,
    remain_ids: torch.Tensor,
    batch_size: int,
    gamma: float,
) -> list[torch.Tensor] | None:
    """The balanced mask for one request, in ``model.parameters()`` order; None (all ones) when nothing remains
    to protect. ``fetch`` must not augment: the Fisher terms describe the data, not its augmentations."""
    if len(remain_ids) == 0:
        return None
    f_task = fisher_diagonal(model, fixed_batches(task_ids, batch_size), fetch)
    f_rem = fisher_diagonal(model, fixed_batches(remain_ids, batch_size), fetch)
    mask = balanced_mask(f_task, f_rem, gamma)
    return [mask[n] for n, p in model.named_parameters() if p.requires_grad]
