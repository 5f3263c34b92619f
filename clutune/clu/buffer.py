"""Reservoir buffer over sample ids (Vitter's algorithm R); the data itself stays behind the data door, so a buffer
holds nothing an unlearn has to chase: purging an id is enough."""

from __future__ import annotations

from typing import Any

import torch


class ReservoirBuffer:
    """Fixed-capacity uniform sample of every id offered so far, with purge for unlearning.

    A purge frees slots and rewinds nothing: later learn requests fill the freed slots first, then continue the
    reservoir with the count of ids seen. Refilling first keeps the buffer full (the slow steps need it), at the
    price of over-representing the ids offered right after a purge.

    A method reads it through :attr:`ids` (the buffered sample ids, in slot order), :meth:`sample` (slot
    *positions*, not ids) and ``len(buffer)``; the runner purges it of every unlearned id before the unlearn
    request runs, and refuses a run whose buffer still holds one after any request.

    Attributes:
        ids: int64 tensor of the buffered sample ids, one per slot; fetch their data with
            ``method.data.fetch(buffer.ids[positions])``.
        logits: float tensor of one row per slot when the method keeps logits (``Method.buffer_logits_dim``),
            else None.
        capacity: the most ids it holds (``buffer_size``).
        seen: how many ids were offered so far (the reservoir's count).
    """

    def __init__(self, capacity: int, seed: int = 0, logits_dim: int | None = None) -> None:
        if capacity < 0:
            raise ValueError("buffer capacity must be >= 0")
        self.capacity = capacity
        self.ids = torch.empty(0, dtype=torch.int64)
        self.logits: torch.Tensor | None = None if logits_dim is None else torch.empty(0, logits_dim)
        self.seen = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        """The number of ids held now (at most ``capacity``)."""
        return int(self.ids.shape[0])

    def add(self, ids: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Offer ``ids`` in order to the reservoir: each is kept with the probability that keeps the buffer a
        uniform sample of everything offered. ``logits`` (one row per id) are kept alongside when the buffer
        has a logits slot, and are then required. Offer D_L once the learn request is done (the built-in methods
        do), so a request never replays its own samples."""
        ids = ids.detach().cpu().to(torch.int64)
        if self.logits is not None and logits is None:
            raise ValueError("this buffer stores logits: pass one row per id")
        logits = None if logits is None else logits.detach().cpu().float()
        new_ids, new_rows = [], []
        keep_ids = self.ids.clone()
        keep_logits = None if self.logits is None else self.logits.clone()
        for j in range(len(ids)):
            self.seen += 1
            row = None if logits is None else logits[j]
            if len(keep_ids) + len(new_ids) < self.capacity:
                new_ids.append(int(ids[j]))
                if row is not None:
                    new_rows.append(row)
                continue
            slot = int(torch.randint(0, self.seen, (1,), generator=self.generator))
            if slot < self.capacity:
                if slot < len(keep_ids):
                    keep_ids[slot] = ids[j]
                    if keep_logits is not None:
                        keep_logits[slot] = row
                else:
                    new_ids[slot - len(keep_ids)] = int(ids[j])
                    if row is not None:
                        new_rows[slot - len(keep_ids)] = row
        self.ids = torch.cat([keep_ids, torch.tensor(new_ids, dtype=torch.int64)])
        if keep_logits is not None:
            extra = torch.stack(new_rows) if new_rows else keep_logits[:0]
            self.logits = torch.cat([keep_logits, extra])

    def purge(self, ids: torch.Tensor) -> int:
        """Drop every entry whose id is in ``ids``; returns how many went. The runner does this for every
        unlearn request; a method need not."""
        drop = torch.isin(self.ids, ids.detach().cpu())
        self.ids = self.ids[~drop]
        if self.logits is not None:
            self.logits = self.logits[~drop]
        return int(drop.sum())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """*Positions* (slot indices 0..len-1), not ids, of ``n`` entries drawn without replacement.

        Positions index :attr:`ids` and :attr:`logits` alike, so one draw batches both. To fetch data, map them
        to ids first: ``method.data.fetch(buffer.ids[buffer.sample(n, g)])``; fetching the positions
        themselves reads unrelated samples, and ``clutune check-method`` reports the unlearned ones among
        them with the line that fetched them.
        """
        n = min(n, len(self))
        return torch.randperm(len(self), generator=generator)[:n]

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint needs to continue the reservoir bit for bit (slots, count, generator)."""
        return {
            "capacity": self.capacity,
            "ids": self.ids.clone(),
            "logits": None if self.logits is None else self.logits.clone(),
            "seen": self.seen,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output."""
        self.capacity = state["capacity"]
        self.ids = state["ids"].clone()
        self.logits = None if state["logits"] is None else state["logits"].clone()
        self.seen = state["seen"]
        self.generator.set_state(state["generator"])
