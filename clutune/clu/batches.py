"""Id batching: shuffled epochs and endless cycles over an id set, driven by an explicit generator."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def epoch_batches(ids: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One shuffled pass over ``ids`` in batches (the last one short), drawn from ``generator`` so a seeded run
    repeats its batches exactly."""
    order = ids[torch.randperm(len(ids), generator=generator)]
    yield from order.split(batch_size)


def cycle_batches(ids: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Reshuffle at every pass; an iteration budget need not align with epochs."""
    while True:
        yield from epoch_batches(ids, batch_size, generator)


def fixed_batches(ids: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Ascending-id batches: for statistics that must not depend on shuffling (the saliency Fisher terms)."""
    return list(ids.sort().values.split(batch_size))
