"""Measurement faults found by running the code as a new user would, each pinned by a test that failed before
its fix: diagnostics under ``compute.compile``, a diverged run in a fixed grid, study summaries of seeds with
different last scored requests, and sweep objectives the oracle policy leaves without a value."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
from torch import nn

import clutune
from clutune.cli import main
from clutune.clu.diagnostics import dead_units, penultimate, plasticity_diagnostics
from clutune.errors import UserError
from clutune.platform.reports.study_report import summary_markdown
from clutune.platform.search.objective_check import check_objectives, valued_requests


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


def _study_rows() -> pd.DataFrame:
    """ugclu on seeds 0 and 1, whose oracle KL is last finite at request 8 (seed 0) and 9 (seed 1); er on seed 0
    only."""
    records = []
    for method, seeds in (("ugclu", (0, 1)), ("er", (0,))):
        for seed in seeds:
            for r in range(10):
                scored = r % 2 == seed % 2
                records.append(
                    {
                        "method": method,
                        "seed": seed,
                        "request": r,
                        "kind": "learn",
                        "kl_oracle_all": 0.5 + 0.01 * r + 0.1 * seed if scored else math.nan,
                        "acc_remain": 0.9 - 0.01 * seed - 0.001 * r * (seed + 1),
                    }
                )
    return pd.DataFrame.from_records(records)


def test_study_summary_states_the_seeds_behind_each_final_value_and_never_prints_plus_minus_zero():
    text = summary_markdown(_study_rows())
    finals = text.split("## Final values and drift per method")[1]
    assert "± 0 " not in finals and "± nan" not in finals  # one seed: the value alone, with its seed count
    assert "(1 of 1 seed)" in finals.split("### er")[1]
    ugclu = finals.split("### ugclu")[1]
    kl_row = next(line for line in ugclu.splitlines() if line.startswith("| kl_oracle_all |"))
    assert "(1 of 2 seeds)" in kl_row and "| 9 |" in kl_row  # only seed 1 is scored at request 9
    assert f"{0.5 + 0.09 + 0.1:.4g} (1 of 2 seeds)" in kl_row
    # the header counts seeds per method, not over all methods
    assert "seeds per method: er 1 (0); ugclu 2 (0, 1)" in text
    assert "2 seeds" not in text.splitlines()[0].replace("ugclu 2 (0, 1)", "")


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_a_diverged_run_marks_its_grid_incomplete(local_ray, tmp_path, capsys, tiny_scenario):
    """finetune's gradient ascent at a huge rate diverges at the unlearn request; ugclu finishes. The compare
    exits 1 with one line naming the run, writes no table, and keeps the rows it has."""
    requests = [{"learn": {"task": 0}}, {"unlearn": {"classes": [0]}}, {"learn": {"task": 1}}]
    oracle = {"epochs": 5, "cache_dir": str(tmp_path / "oracles")}
    config = tiny_scenario(tmp_path, "tiny-diverge", oracle=oracle, requests=requests, file="tiny")
    out = tmp_path / "out"
    sets = ["epochs_per_learn=1", "iters_per_unlearn=5", "buffer_size=50", "unlearn_lr=1e30"]
    args = ["compare", "--config", str(config), "--methods", "ugclu,finetune", "--seeds", "0", "--out", str(out)]
    code = main(args + [a for s in sets for a in ("--set", s)] + ["--no-tracking"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0] and "method finetune, seed 0" in err[0], err
    assert not (out / "comparison.md").exists()
    rows = pd.read_parquet(out / "results.parquet")
    assert set(rows.loc[rows["method"] == "finetune", "request"]) == {0}  # the rows before the divergence
    assert set(rows.loc[rows["method"] == "ugclu", "request"]) == {0, 1, 2}


KINDS = ["learn", "learn", "unlearn", "learn", "unlearn", "learn", "learn", "unlearn"]  # digits-agnostic-class


def test_objectives_the_oracle_policy_leaves_without_a_value_are_refused_and_a_blind_asha_is_said():
    said: list[str] = []
    # scored requests are the unlearns (and the last, an unlearn): the learn split is never scored
    with pytest.raises(UserError, match="gap_learn has no value at any of the 8 requests under oracle.policy unlearn"):
        check_objectives(["kl_oracle_all", "gap_learn"], "unlearn", 1, KINDS, True, said.append)
    with pytest.raises(UserError, match="kl_oracle_learn has no value"):
        check_objectives(["kl_oracle_learn"], "final", 1, KINDS, True, said.append)
    assert said == []
    # final policy: a value at the last request only, so ASHA has nothing to compare at its rungs
    check_objectives(["kl_oracle_all", "gap_unlearn"], "final", 1, KINDS, True, said.append)
    assert len(said) == 1 and said[0].startswith("ASHA cannot prune: the first objective kl_oracle_all")
    check_objectives(["kl_oracle_all"], "final", 1, KINDS, False, said.append)  # no ASHA: nothing to say
    check_objectives(["seconds"], "final", 1, KINDS, True, said.append)  # not an oracle metric: every request
    check_objectives(["kl_oracle_all"], "every_k", 3, KINDS, True, said.append)  # requests 2 and 5 scored
    assert len(said) == 1
    assert valued_requests("gap_learn", "every_k", 3, KINDS) == [5]
    assert valued_requests("kl_oracle_unlearn", "every", 1, KINDS) == [2, 3, 4, 5, 6, 7]


def test_a_sweep_refuses_an_empty_objective_before_any_work(tmp_path):
    sweeps, cache = tmp_path / "sweeps", tmp_path / "oracles"
    sets = ["oracle.policy=unlearn", "sweep.objectives=[kl_oracle_all,gap_learn]"]
    sets += [f"sweep.storage_path={sweeps}", f"oracle.cache_dir={cache}"]
    with pytest.raises(UserError, match="gap_learn has no value"):
        clutune.sweep(
            "digits-agnostic-class",
            method="ugclu",
            trials=2,
            overrides=sets,
            tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        )
    assert not sweeps.exists() and not cache.exists() and not (tmp_path / "m.db").exists()
