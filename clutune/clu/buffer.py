"""Reservoir buffer over sample ids (Vitter's algorithm R); the data itself stays in the resident tensors."""

from __future__ import annotations

from typing import Any

import torch


class ReservoirBuffer:
    """Fixed-capacity uniform sample of every id offered so far, with purge for unlearning.

    A purge frees slots and rewinds nothing: later learn requests fill the freed slots first, then continue the
    reservoir with the count of ids seen. Refilling first keeps the buffer full (the slow steps need it), at the
    price of over-representing the ids offered right after a purge.
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
        return int(self.ids.shape[0])

    def add(self, ids: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Offer ``ids`` in order; ``logits`` (one row per id) are kept alongside when the buffer has a slot."""
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
        """Drop every entry whose id is in ``ids``; returns how many went."""
        drop = torch.isin(self.ids, ids.detach().cpu())
        self.ids = self.ids[~drop]
        if self.logits is not None:
            self.logits = self.logits[~drop]
        return int(drop.sum())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Positions (not ids) of ``n`` entries drawn without replacement, for batching ids and logits."""
        n = min(n, len(self))
        return torch.randperm(len(self), generator=generator)[:n]

    def state_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "ids": self.ids.clone(),
            "logits": None if self.logits is None else self.logits.clone(),
            "seen": self.seen,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.capacity = state["capacity"]
        self.ids = state["ids"].clone()
        self.logits = None if state["logits"] is None else state["logits"].clone()
        self.seen = state["seen"]
        self.generator.set_state(state["generator"])
