"""The only door from a method to training data, and the place the privacy promise is enforced.

Every batch a method (or an oracle) trains on is fetched here by id. Ids that were unlearned are blocked for
good, so no later training step can touch them, whatever a method's code does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from clutune.clu.call_site import site_of_stack


class UnlearnedAccessError(RuntimeError):
    """A training step asked for a sample that was unlearned: a bug in the method, never a user error, and one
    that recurs on every retry. ``site`` is the method's own line that asked (``file:line``), because the raise
    itself is in clutune's code, far from the mistake."""

    def __init__(self, message: str, sample_id: int | None = None, site: str | None = None) -> None:
        super().__init__(message)
        self.sample_id, self.site = sample_id, site


class TrainAccess:
    """Ids live on the host (every batcher draws them there), and so does the blocked mask: the check is a host
    lookup before any row is read, so it refuses every unlearned id before it can reach a device, and it never
    waits on the device. Ids then travel to the data's device without a synchronisation (pinned memory,
    non-blocking copy), so a CUDA training step queues its kernels without a host round trip.

    The door is the only way a method reads training data: the sample tensors and the blocked mask are private,
    and what is public is :meth:`fetch` by id, the number of samples, the device, an all-zero input for shape
    probes, and the audit (``touched``, ``samples``, a copy of ``blocked``).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        to_inputs: Callable[[torch.Tensor], torch.Tensor],
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        self._x, self._y = x, y
        self._to_inputs = to_inputs
        self._augment = augment
        self._blocked = torch.zeros(len(y), dtype=torch.bool)
        self.touched = torch.zeros(len(y), dtype=torch.bool)  # every id any training step has fetched
        # Samples fetched while autograd is on: the forward+backward passes paid, whichever network they feed.
        self.samples = 0

    def __len__(self) -> int:
        """The number of training ids (owned or not): ids are 0 .. len - 1."""
        return len(self._y)

    @property
    def device(self) -> torch.device:
        """Where fetched batches live: put a method's own tensors (masks, statistics) here."""
        return self._x.device

    @property
    def blocked(self) -> torch.Tensor:
        """A copy of the mask of refused ids: reading it cannot unblock one."""
        return self._blocked.clone()

    def zero_inputs(self) -> torch.Tensor:
        """One all-zero model-ready input (dtype, layout and device as a fetched one): probes a model's output
        width without reading any sample."""
        return torch.zeros_like(self._to_inputs(self._x[:1]))

    def block(self, ids: torch.Tensor) -> None:
        """Refuse ``ids`` from now on, for good. The runner calls it at the end of each unlearn request."""
        self._blocked[ids.cpu()] = True

    def block_all_but(self, ids: torch.Tensor) -> None:
        """Open the door to ``ids`` only (an oracle's owned set)."""
        self._blocked[:] = True
        self._blocked[ids.cpu()] = False

    def fork(self) -> TrainAccess:
        """A door over the same data that refuses every id this one refuses now, with an audit of its own.

        An attack on a copy of the model (the relearning attack) must read through the same refusals as the
        method, yet leave the method's audit (``touched``, ``samples``) as the method left it."""
        door = TrainAccess(self._x, self._y, self._to_inputs, self._augment)
        door._blocked = self._blocked.clone()
        return door

    def fetch(
        self, ids: torch.Tensor, generator: torch.Generator | None = None, augment: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-ready inputs and labels for ``ids`` (sample ids, not buffer positions), on :attr:`device`.

        Augmented (``augment: true`` in the config) when ``generator`` is given and ``augment`` is left on; pass
        the method's generator so the run stays deterministic. An id unlearned by an earlier request raises
        :class:`UnlearnedAccessError` naming the caller's line, before any row is read; the run then ends, as a
        retry would fail the same way.
        """
        ids = ids.cpu()  # a no-op for the host ids every batcher produces
        if self._blocked[ids].any():
            bad = int(ids[self._blocked[ids]][0])
            raise UnlearnedAccessError(f"training step requested unlearned sample id {bad}", bad, site_of_stack())
        self.touched[ids] = True
        if torch.is_grad_enabled():
            self.samples += len(ids)
        dev_ids = to_device(ids, self._x.device)
        x = self._to_inputs(self._x[dev_ids])
        if augment and self._augment is not None and generator is not None:
            x = self._augment(x, generator)
        return x, self._y[dev_ids]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without making the host wait: a blocking copy to CUDA would first drain every
    kernel queued so far. The pinned staging block is kept alive by PyTorch's host allocator until the copy ran."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, batched on the data's device (no per-image Python).

    The random draws come from the host generator and travel without a synchronisation, and the flip is a
    ``where`` rather than a boolean-mask assignment (which would read the mask's size back to the host)."""
    if x.dim() != 4:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = to_device(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
    dy = to_device(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    out = padded[batch, chan, rows, cols]
    flip = to_device(torch.rand(n, generator=generator) < 0.5, x.device)
    return torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)
