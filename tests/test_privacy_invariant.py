"""The privacy promise as a property: over random request streams and every replaying method, an unlearned id
never sits in the buffer, is never fetched by a later training step, and never trains the oracle of its request."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutune.clu.access import UnlearnedAccessError
from clutune.core.config import load_config
from clutune.core.experiment import ExperimentRun, method_hparams, oracle_for, prepare
from clutune.core.scenarios import build_scenario

FAST = {"epochs_per_learn": 1, "iters_per_unlearn": 4, "batch_size": 32}


@st.composite
def streams(draw):
    """Learn the five tasks in order; between learns, unlearn random classes, fractions or ids of what is owned."""
    requests = []
    for task in range(5):
        requests.append({"learn": {"task": task}})
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["classes", "fraction", "ids"]))
            if kind == "classes":
                requests.append({"unlearn": {"classes": [draw(st.integers(0, 2 * task + 1))]}})
            elif kind == "fraction":
                requests.append({"unlearn": {"fraction": draw(st.sampled_from([0.05, 0.2]))}})
            else:
                requests.append({"unlearn": {"ids": "pick"}})
    return requests, draw(st.integers(0, 10_000))


def _resolve(requests, labels: torch.Tensor, seed: int) -> list[dict]:
    """Make the drawn shapes valid against what is owned at that point (hypothesis draws shapes, not ids)."""
    gen = torch.Generator().manual_seed(seed)
    out: list[dict] = []
    for req in requests:
        if "learn" in req:
            out.append(req)
            continue
        owned = build_scenario(out, labels, 10).owned(-1).nonzero().flatten()
        spec = req["unlearn"]
        if "classes" in spec and not torch.isin(labels[owned], torch.tensor(spec["classes"])).any():
            continue
        if "ids" in spec:
            spec = {"ids": owned[torch.randperm(len(owned), generator=gen)[:7]].tolist()}
        if "fraction" in spec and round(spec["fraction"] * len(owned)) == 0:
            continue
        out.append({"unlearn": spec})
    return out


@pytest.mark.parametrize("method", ["ugclu", "er", "derpp", "rl", "salun", "sfron", "scrub", "ga", "retrain"])
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
def test_unlearned_ids_never_reach_buffer_training_or_oracle(method, stream, tmp_path):
    requests, seed = stream
    base = load_config("digits-agnostic-class", [f"oracle.cache_dir={tmp_path / 'oracles'}", "oracle.epochs=1"])
    prep = prepare(base)
    base.scenario.requests = _resolve(requests, prep.dataset.y_train.cpu(), seed)
    base.model.hidden = [16]
    prep = prepare(base, prep.dataset)
    run = ExperimentRun(prep, method, method_hparams(base, method, "digits", FAST), seed=seed % 3)
    sc = prep.scenario

    def check(row, current):
        k = row["request"]
        unlearned = sc.unlearned(k)
        buffer = current.method.buffer
        if buffer is not None:
            assert not unlearned[buffer.ids].any(), f"request {k}: unlearned id in the buffer"
        # ids fetched by this request's training: none may have been unlearned before this request
        data = current.method.data
        earlier = sc.unlearned(k - 1) if k > 0 else torch.zeros_like(unlearned)
        assert not (data.touched & earlier).any(), f"request {k}: training fetched an id unlearned earlier"
        data.touched.zero_()
        oracle = oracle_for(prep, k)
        assert not unlearned[oracle.trained_ids].any(), f"request {k}: the oracle saw an unlearned id"
        assert torch.equal(oracle.trained_ids, sc.owned(k).nonzero().flatten())
        if unlearned.any():
            with pytest.raises(UnlearnedAccessError):
                data.fetch(unlearned.nonzero().flatten()[:1])

    assert len(run.run(check)) == len(sc)
