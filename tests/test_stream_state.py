"""What a run keeps per request does not grow with the stream: a checkpoint at request 500 is the size of one at
request 50, and forgetting from the per-task fronts equals forgetting over the whole history."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from clutune.core.config import load_config
from clutune.core.experiment import ExperimentRun, method_hparams, prepare
from clutune.core.forgetting import StreamForgetting
from clutune.core.metrics import forgetting

LONG = [
    "device=cpu",
    "threads=1",
    "model.hidden=[8]",
    "probe_size=0",
    "scenario.generate.n_requests=501",
    "scenario.generate.first_learn=100",
    "scenario.generate.learn_chunk=2",
    "scenario.generate.unlearn_ratio=0",  # no unlearn: no membership attack to fit at every request
]


def test_a_checkpoint_at_request_500_is_the_size_of_one_at_request_50(tmp_path):
    config = load_config("digits-long-200", [f"oracle.cache_dir={tmp_path}", *LONG])
    prep = prepare(config)
    hparams = method_hparams(config, "finetune", "digits", {"epochs_per_learn": 1})
    sizes: dict[int, int] = {}

    def measure(row, run):
        if row["request"] in (50, 500):
            saved = io.BytesIO()
            torch.save(run.state(), saved)
            sizes[row["request"]] = len(saved.getvalue())

    rows = ExperimentRun(prep, "finetune", hparams, seed=0, oracle=lambda k: None).run(measure)
    assert len(rows) == 501 and any(r["forgetting"] > 0 for r in rows)  # the history mattered
    # 450 more requests of 10 per-class accuracies would be 36,000 bytes more
    assert abs(sizes[500] - sizes[50]) < 1_000, sizes


def _whole_history(task_classes, counts, history, learned_at, owned, k):
    """Forgetting at request k as it was computed from every request's per-class accuracies."""
    drops = []
    for t, first in learned_at.items():
        classes = [c for c in task_classes[t] if c in owned and counts[c] > 0]
        if first == k or not classes:
            continue
        weights = counts[classes]
        drops.append(list(np.stack(history)[first : k + 1][:, classes] @ weights / weights.sum()))
    return forgetting(drops)


@pytest.mark.parametrize("seed", range(5))
def test_forgetting_from_fronts_equals_forgetting_over_the_whole_history(seed):
    rng = np.random.default_rng(seed)
    task_classes = [[0, 1], [2, 3, 4], [5], [6, 7]]  # class 7 has no test sample
    labels = np.concatenate([np.full(n, c) for c, n in enumerate([9, 11, 7, 8, 10, 12, 5, 0])])
    counts = np.bincount(labels, minlength=8).astype(np.float64)
    stream = StreamForgetting(task_classes, labels, 8)
    history: list[np.ndarray] = []
    learned_at: dict[int, int] = {}
    kept = []
    for k in range(200):
        learned = list(rng.choice(4, size=rng.integers(0, 3), replace=False)) if rng.random() < 0.6 else []
        for t in learned:
            learned_at.setdefault(int(t), k)
        owned = {c for c in range(8) if rng.random() < 0.8}  # classes come and go, as unlearns and relearns do
        per_class = np.where(counts > 0, rng.integers(0, 13, size=8) / np.maximum(counts, 1), np.nan)
        history.append(per_class)
        expected = _whole_history(task_classes, counts, history, learned_at, owned, k)
        assert stream.step(k, [int(t) for t in learned], per_class, owned) == pytest.approx(expected, abs=1e-12)
        if k == 100:  # a checkpoint round trip in the middle changes nothing
            saved = io.BytesIO()
            torch.save(stream.state(), saved)
            saved.seek(0)
            stream = StreamForgetting(task_classes, labels, 8)
            stream.restore(torch.load(saved, weights_only=True))
        kept.append(sum(len(f) for f in stream.fronts.values()))
    assert max(kept) < len(history)  # the fronts keep far fewer vectors than the history


def test_a_checkpoint_with_the_whole_history_resumes_into_the_same_fronts():
    """A checkpoint written before the fronts held every request's per-class accuracies; resuming from it
    continues as the run that never stopped."""
    rng = np.random.default_rng(7)
    task_classes = [[0, 1], [2, 3, 4], [5, 6]]
    labels = np.repeat(np.arange(7), 6)
    whole, resumed = StreamForgetting(task_classes, labels, 7), StreamForgetting(task_classes, labels, 7)
    history, learned_at = [], {}
    for k in range(120):
        if k == 60:  # the checkpoint after request 59
            resumed.restore_history(torch.from_numpy(np.stack(history)), dict(learned_at))
        learned = [int(t) for t in rng.choice(3, size=rng.integers(0, 2), replace=False)]
        for t in learned:
            learned_at.setdefault(t, k)
        owned = {c for c in range(7) if rng.random() < 0.85}
        per_class = rng.integers(0, 7, size=7) / 6
        if k >= 60:
            assert resumed.step(k, learned, per_class, owned) == whole.step(k, learned, per_class, owned)
        else:
            whole.step(k, learned, per_class, owned)
        history.append(per_class)
