"""Measurement faults found by running the code as a new user would, each pinned by a test that failed before
its fix: diagnostics under ``compute.compile``, a diverged run in a fixed grid, study summaries of seeds with
different last scored requests, and sweep objectives the oracle policy leaves without a value."""

from __future__ import annotations

import copy

import torch
from torch import nn

from clutune.clu.diagnostics import dead_units, penultimate, plasticity_diagnostics


def _mlp_with_dead_units() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].bias[:4] = -100.0  # four units of the first layer never fire
    return model


def test_diagnostics_of_a_compiled_model_equal_the_uncompiled_ones_on_the_same_weights():
    """``nn.Module.compile`` as ``compute.compile`` does; the no-grad call first is the runner's evaluation,
    after which the compiled graph ran without the probe's hooks (dead_units NaN, the head 'did not run')."""
    model = _mlp_with_dead_units()
    x = torch.randn(64, 8)
    eager = plasticity_diagnostics(copy.deepcopy(model), x, batch_size=16)
    compiled = copy.deepcopy(model)
    compiled.compile(backend="eager")  # dynamo's graph capture is what skips the hooks; no C++ build needed
    with torch.no_grad():
        compiled(x)
    assert plasticity_diagnostics(compiled, x, batch_size=16) == eager
    assert eager["dead_units"] == 4 / 32
    assert dead_units(compiled, x) == eager["dead_units"]
    assert torch.equal(penultimate(compiled, x), penultimate(model, x))
    # the compiled module still runs compiled afterwards, with no probe hook left behind
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in compiled.modules())
