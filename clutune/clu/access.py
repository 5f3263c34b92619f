"""The only door from a method to training data, and the place the privacy promise is enforced.

Every batch a method (or an oracle) trains on is fetched here by id. Ids that were unlearned are blocked for
good, so no later training step can touch them, whatever a method's code does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class UnlearnedAccessError(RuntimeError):
    """A training step asked for a sample that was unlearned: a bug, never a user error."""


class TrainAccess:
    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        to_inputs: Callable[[torch.Tensor], torch.Tensor],
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.to_inputs = to_inputs
        self.augment = augment
        self.blocked = torch.zeros(len(y), dtype=torch.bool)
        self.touched = torch.zeros(len(y), dtype=torch.bool)  # every id any training step has fetched
        # Samples fetched while autograd is on: the forward+backward passes paid, whichever network they feed.
        self.samples = 0

    @property
    def device(self) -> torch.device:
        return self.x.device

    def block(self, ids: torch.Tensor) -> None:
        self.blocked[ids.cpu()] = True

    def fetch(
        self, ids: torch.Tensor, generator: torch.Generator | None = None, augment: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels for ``ids``; augmented when an augmentation is set and ``generator`` given."""
        ids = ids.cpu()
        if self.blocked[ids].any():
            bad = int(ids[self.blocked[ids]][0])
            raise UnlearnedAccessError(f"training step requested unlearned sample id {bad}")
        self.touched[ids] = True
        if torch.is_grad_enabled():
            self.samples += len(ids)
        dev_ids = ids.to(self.x.device)
        x = self.to_inputs(self.x[dev_ids])
        if augment and self.augment is not None and generator is not None:
            x = self.augment(x, generator)
        return x, self.y[dev_ids]


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, batched on the data's device (no per-image Python)."""
    if x.dim() != 4:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    out = padded[batch, chan, rows, cols]
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    out[flip] = out[flip].flip(-1)
    return out
