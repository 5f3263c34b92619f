"""Forgetting over a stream of any length, from state that does not grow with the stream.

Forgetting at request k averages, over the tasks learned before k that still own some of their classes, the
task's test accuracy on those classes at its best request since it was learned, minus its accuracy now
(:func:`clutune.core.metrics.forgetting`). The classes are those owned now, so whenever unlearning (or a
relearn) changes them, the best earlier accuracy must be weighed again over the new set: one running maximum
cannot serve, and keeping every request's per-class accuracies makes each request, and each checkpoint, grow
with the stream.

What serves exactly is, per task, the per-class accuracy vectors of its history that no other vector beats on
every class (its Pareto front). A mean of per-class accuracies weighted by non-negative test counts, over any
subset of the task's classes, is largest at a vector of that front, so the best is the one over the whole
history. The front stays small: per-class accuracies lie on a grid (hits over test samples of the class), and
a front on a grid is no longer than the grid's side for a task of two classes, and in practice a few vectors
more per extra class.
"""

from __future__ import annotations

import numpy as np
import torch

from clutune.core.metrics import forgetting


def with_vector(front: np.ndarray | None, vector: np.ndarray) -> np.ndarray:
    """``front`` with ``vector`` added, keeping only the vectors no other one is at least as good as on every
    class (of two equal vectors one stays)."""
    if front is None:
        return vector[None, :].copy()
    if (front >= vector).all(axis=1).any():
        return front
    return np.vstack([front[~(vector >= front).all(axis=1)], vector])


class StreamForgetting:
    """The forgetting metric request by request: per learned task, the request that first learned it and the
    front of its per-class test accuracies since then."""

    def __init__(self, task_classes: list[list[int]], test_labels: np.ndarray, num_classes: int) -> None:
        self.counts = np.bincount(test_labels, minlength=num_classes).astype(np.float64)
        self.tested = [[c for c in classes if self.counts[c] > 0] for classes in task_classes]
        self.learned_at: dict[int, int] = {}  # task -> request that first learned it, in that order
        self.fronts: dict[int, np.ndarray] = {}  # task -> (vectors, its tested classes): the front

    def step(self, k: int, learned: list[int], per_class: np.ndarray, owned_classes: set[int]) -> float:
        """Forgetting at request ``k``, which learned the tasks ``learned`` (none for an unlearn) and left the
        model with test accuracy ``per_class`` on each class; then request k joins the history."""
        for t in learned:
            self.learned_at.setdefault(t, k)
        drops = []
        for t, first in self.learned_at.items():
            tested = self.tested[t]
            now = per_class[tested]
            keep = [i for i, c in enumerate(tested) if c in owned_classes]
            if first < k and keep:
                weights = self.counts[[tested[i] for i in keep]]
                best = float((self.fronts[t][:, keep] @ weights / weights.sum()).max())
                drops.append([best, float(now[keep] @ weights / weights.sum())])
            self.fronts[t] = with_vector(self.fronts.get(t), now)
        return forgetting(drops)

    def state(self) -> dict[str, dict[int, int] | dict[int, torch.Tensor]]:
        return {"learned_at": dict(self.learned_at), "fronts": {t: torch.from_numpy(f) for t, f in self.fronts.items()}}

    def restore(self, state: dict[str, dict]) -> None:
        self.learned_at = {int(t): int(k) for t, k in state["learned_at"].items()}
        self.fronts = {int(t): f.numpy().copy() for t, f in state["fronts"].items()}

    def restore_history(self, class_acc: torch.Tensor | None, learned_at: dict[int, int]) -> None:
        """From a checkpoint written before the fronts, which held every request's per-class accuracies (a row
        per request): the fronts they make, so a run or sweep started then resumes exactly."""
        self.learned_at = {int(t): int(k) for t, k in learned_at.items()}
        self.fronts = {}
        history = np.empty((0, len(self.counts))) if class_acc is None else class_acc.numpy()
        for t, first in self.learned_at.items():
            for vector in history[first:, self.tested[t]]:
                self.fronts[t] = with_vector(self.fronts.get(t), vector)


__all__ = ["StreamForgetting", "with_vector"]
