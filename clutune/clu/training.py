"""Plain supervised epochs and batched inference, shared by finetune-style methods and the oracle."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.access import TrainAccess
from clutune.clu.batches import epoch_batches


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one pass over ``n`` samples, the last one short: what an optimizer's schedule must span."""
    return -(-n // batch_size)


def sgd_epochs(
    model: nn.Module,
    data: TrainAccess,
    ids: torch.Tensor,
    epochs: int,
    batch_size: int,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler | None,
    generator: torch.Generator,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Shuffled passes over ``ids``; ``loss(x, y)`` sees each batch (default: the model's cross-entropy)."""
    loss = loss or (lambda x, y: F.cross_entropy(model(x), y))
    model.train()
    for _ in range(epochs):
        for batch in epoch_batches(ids, batch_size, generator):
            x, y = data.fetch(batch, generator)
            opt.zero_grad(set_to_none=True)
            loss(x, y).backward()
            opt.step()
            if sched is not None:
                sched.step()


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, to_inputs, batch_size: int = 1024) -> torch.Tensor:
    """Logits for every row of ``x`` (on the CPU, float32), the model in eval mode.

    Chunks stay on the model's device and come back in one copy, so the device never waits for the host
    between chunks; float32 on the host whatever the autocast precision (metrics use float64 softmax of these).
    """
    model.eval()
    outs = [model(to_inputs(chunk)).float() for chunk in x.split(batch_size)]
    return torch.cat(outs).cpu() if outs else torch.empty(0)
