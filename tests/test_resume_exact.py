"""A run restored from a request-boundary checkpoint continues exactly as if it had never stopped."""

from __future__ import annotations

import io
import math

import pytest
import torch

from clutune.core.config import load_config
from clutune.core.experiment import ExperimentRun, method_hparams, prepare
from clutune.platform.run.trainable import CheckpointCadence

FAST = {"epochs_per_learn": 2, "iters_per_unlearn": 10}
VARYING = {"run_id", "seconds", "step_seconds", "cpu_seconds", "cpu_step_seconds", "rss_mb", "oracle_seconds"}
VARYING |= {"oracle_cached"}


# ugclu in the fast loop, the other methods in `make test`
@pytest.mark.parametrize(
    "method", ["ugclu", *(pytest.param(m, marks=pytest.mark.slow) for m in ("derpp", "clpu", "retrain"))]
)
def test_resume_from_checkpoint_equals_uninterrupted_run(method, tmp_path):
    preset = "digits-task-aware" if method == "clpu" else "digits-agnostic-class"
    config = load_config(preset, [f"oracle.cache_dir={tmp_path}", "oracle.epochs=3", "device=cpu"])
    prep = prepare(config)
    hparams = method_hparams(config, method, "digits", {} if method == "retrain" else FAST)
    whole = ExperimentRun(prep, method, hparams, seed=1).run()

    first = ExperimentRun(prep, method, hparams, seed=1)
    saved = io.BytesIO()

    def stop_after_three(row, run):
        if row["request"] == 2:
            torch.save(run.state(), saved)
            raise KeyboardInterrupt  # the driver dies here

    with pytest.raises(KeyboardInterrupt):
        first.run(stop_after_three)
    torch.manual_seed(12345)  # a fresh process has other global RNG state: the checkpoint must restore it
    resumed = ExperimentRun(prep, method, hparams, seed=1)
    saved.seek(0)
    resumed.restore(torch.load(saved, weights_only=True))
    rows = resumed.run()

    assert len(rows) == len(whole) - 3  # the checkpoint holds the position, not the rows already recorded
    for a, b in zip(whole[3:], rows, strict=True):
        for key in a.keys() - VARYING:
            same = a[key] == b[key] or (isinstance(a[key], float) and math.isnan(a[key]) and math.isnan(b[key]))
            assert same, (method, a["request"], key, a[key], b[key])


def test_checkpoint_cadence_by_requests_by_time_and_always_last():
    def pattern(every: int | None, seconds: float, n: int = 8) -> list[int]:
        cadence = CheckpointCadence(every, seconds)
        return [k for k in range(1, n + 1) if cadence.due(last=k == n)]

    assert pattern(None, math.inf) == [8]  # the last request always ends with one
    assert pattern(3, math.inf) == [3, 6, 8]
    assert pattern(None, 0.0) == list(range(1, 9))  # no time between checkpoints: after every request
    assert pattern(5, 0.0) == list(range(1, 9))  # either reason is enough
