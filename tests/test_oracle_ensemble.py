"""Oracle ensembles (``oracle.ensemble: M``): member 0 is today's oracle bit for bit, each member is cached on
its own so raising M trains only the new ones, the floor columns are what their definitions say, and the
per-sample margins reach the results folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import torch

import clutune
from clutune.core.config import load_config
from clutune.core.ensemble_metrics import ENSEMBLE_COLUMNS
from clutune.core.experiment import ExperimentRun, members_for, method_hparams, oracle_for, prepare
from clutune.core.margins import member_margins_path, read_margins, run_margins_path
from clutune.core.members import member_key, train_members
from clutune.core.oracle import OracleCache, oracle_key, train_oracle
from clutune.errors import UserError
from clutune.platform.cluster.oracle_pool import plan_oracles, submit_oracles

# Two requests, and only the last one scored (oracle.policy final): one owned set, so one member per seed.
STREAM = """
name: ensemble-stream
dataset: {name: digits}
model: {name: mlp, hidden: [16]}
oracle: {epochs: 2, policy: final, cache_dir: CACHE}
device: cpu
probe_size: 0
scenario:
  requests:
    - learn: {tasks: [0, 1]}
    - unlearn: {classes: [1]}
"""
FAST = ["epochs_per_learn=1", "iters_per_unlearn=5"]
# Metric columns that do not depend on the ensemble: every one must come out the same at M = 1 and M = 4.
TIMING = {"seconds", "step_seconds", "cpu_seconds", "cpu_step_seconds", "rss_mb", "compile_seconds"}
TIMING |= {"oracle_seconds", "oracle_cached"}


@pytest.fixture
def stream(tmp_path) -> Path:
    path = tmp_path / "stream.yaml"
    path.write_text(STREAM.replace("CACHE", str(tmp_path / "oracles")))
    return path


def cache_keys(tmp_path: Path) -> set[str]:
    return {e.key for e in OracleCache(tmp_path / "oracles").entries()}


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_members_of_a_grid_are_planned_cached_and_scored(local_ray, stream, tmp_path):
    def compare(m: int, out: str):
        return clutune.compare(
            str(stream),
            methods=["finetune"],
            seeds=[0, 1],
            out=tmp_path / out,
            overrides=[*FAST, f"oracle.ensemble={m}"],
            tracking=False,
            log=lambda line: None,
        )

    # M = 2 through the oracle pool: member 0 in its own task, member 1 in a pack of one
    prep = prepare(load_config(stream, ["oracle.ensemble=2"]))
    plan = plan_oracles(prep)
    assert len(plan.missing) == 2 and plan.packs(16) == [plan.members_of_request[1]]
    refs = submit_oracles(prep, plan)
    assert not any(out.cached for out in ray.get([refs[k] for k in plan.missing]))
    assert cache_keys(tmp_path) == set(plan.owned)
    # M = 4 on the same cache, through a whole grid: only members 2 and 3 train
    assert len(plan_oracles(prepare(load_config(stream, ["oracle.ensemble=4"]))).missing) == 2
    four = compare(4, "m4")
    # members 2 and 3, and KLoM's 2 floor models (2 seeds; oracle seeds 4 and 5): member 0 and member 1 came from
    # the cache
    assert four.oracles_trained == 4
    assert len(cache_keys(tmp_path)) == 6
    one = compare(1, "m1")
    assert one.oracles_trained == 0

    rows4 = pq.read_table(tmp_path / "m4" / "results.parquet").to_pandas().sort_values(["seed", "request"])
    rows1 = pq.read_table(tmp_path / "m1" / "results.parquet").to_pandas().sort_values(["seed", "request"])
    assert not set(ENSEMBLE_COLUMNS) & set(rows1.columns)  # M = 1: the columns are absent
    scored, unscored = rows4[rows4.request == 1], rows4[rows4.request == 0]
    assert scored[list(ENSEMBLE_COLUMNS)].notna().all().all()
    assert unscored[list(ENSEMBLE_COLUMNS)].isna().all().all()  # a request without an oracle: NaN
    assert (scored.oracle_floor_lo <= scored.oracle_floor).all() and (
        scored.oracle_floor <= scored.oracle_floor_hi
    ).all()
    # member 0 is today's oracle: the same key, and every other number of the run unchanged
    assert list(rows4.oracle_key) == list(rows1.oracle_key)
    shared = [c for c in rows1.columns if rows1[c].dtype.kind == "f" and c not in TIMING]
    assert "kl_oracle_all" in shared
    np.testing.assert_array_equal(rows4[shared].to_numpy(), rows1[shared].to_numpy())

    members = read_margins(member_margins_path(tmp_path / "m4", 1))
    assert members["unlearn"][1].shape == (4, int(scored.n_unlearned_total.iloc[0]))
    for run_id in rows4.run_id.unique():
        own = read_margins(run_margins_path(tmp_path / "m4", run_id, 1))
        assert own["test"][1].shape == members["test"][1].shape[1:]
        np.testing.assert_array_equal(own["unlearn"][0], members["unlearn"][0])
    assert not (tmp_path / "m1" / "margins").exists()


def test_floor_columns_and_margins_equal_brute_force(stream, tmp_path):
    config = load_config(stream, ["oracle.ensemble=3"])
    prep = prepare(config)
    hparams = method_hparams(config, "finetune", "digits", {"epochs_per_learn": 1, "iters_per_unlearn": 5})
    out = tmp_path / "run"
    run = ExperimentRun(prep, "finetune", hparams, 0, run_id="r", predictions_dir=out / "predictions", margins_out=out)
    row = run.run()[1]
    members = [oracle_for(prep, 1), *members_for(prep, 1)]
    assert len(members) == 3 and all(m.cached for m in members)

    # every sample kl_oracle_all averages over, in the predictions file's order, with the model's probabilities
    predictions = pq.read_table(out / "predictions" / "request-1.parquet").to_pydict()
    p_model = torch.tensor(predictions["p_model"], dtype=torch.float64)
    ids = torch.tensor(predictions["sample_id"])
    is_test = torch.tensor([s == "test" for s in predictions["split"]])
    member_p = [
        torch.where(is_test[:, None], m.logits_test[ids.clamp_max(len(m.logits_test) - 1)], m.logits_train[ids])
        .double()
        .softmax(1)
        for m in members
    ]

    def kl(p: torch.Tensor, q: torch.Tensor) -> float:
        """KL(p ‖ q) per sample, probabilities floored at 1e-12 as the metrics floor them, then the mean."""
        p, q = p.clamp_min(1e-12), q.clamp_min(1e-12)
        return float((p * (p.log() - q.log())).sum(1).mean())

    pairs = [kl(member_p[i], member_p[j]) for i in range(3) for j in range(3) if i != j]
    floor = sum(pairs) / len(pairs)
    assert row["oracle_floor"] == pytest.approx(floor, rel=1e-9)
    assert row["oracle_floor_lo"] == pytest.approx(np.percentile(pairs, 2.5), rel=1e-9)
    assert row["oracle_floor_hi"] == pytest.approx(np.percentile(pairs, 97.5), rel=1e-9)
    assert row["kl_oracle_all"] == pytest.approx(kl(member_p[0], p_model), rel=1e-9)  # still member 0's
    assert row["kl_oracle_ens"] == pytest.approx(kl(torch.stack(member_p).mean(0), p_model), rel=1e-9)
    to_members = sum(kl(p, p_model) for p in member_p) / 3
    assert row["kl_over_floor"] == pytest.approx(to_members / floor, rel=1e-9)

    # margins: correct-class logit minus the logsumexp of the others, stored in float16
    def margin(z: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        at_y = y.expand(*z.shape[:-1]).unsqueeze(-1)
        return (z.gather(-1, at_y).squeeze(-1) - z.scatter(-1, at_y, float("-inf")).logsumexp(-1)).numpy()

    stored_members, stored_run = read_margins(member_margins_path(out, 1)), read_margins(run_margins_path(out, "r", 1))
    for name in ("unlearn", "test"):
        sample_ids, values = stored_members[name]
        index = torch.from_numpy(sample_ids)
        y = (prep.dataset.y_test if name == "test" else prep.dataset.y_train)[index]
        z = torch.stack([(m.logits_test if name == "test" else m.logits_train)[index] for m in members]).double()
        np.testing.assert_allclose(values, margin(z, y), rtol=2e-3, atol=2e-3)
        # the run's own: the log-probabilities of its saved predictions give the same margins as its logits
        rows = [i for i, s in enumerate(predictions["split"]) if s == name]
        assert stored_run[name][0].tolist() == [predictions["sample_id"][i] for i in rows] == sample_ids.tolist()
        np.testing.assert_allclose(stored_run[name][1], margin(p_model[rows].log(), y), rtol=2e-3, atol=2e-3)


def test_train_members_matches_the_solo_oracle_of_each_seed_under_member_keys(stream, tmp_path):
    prep = prepare(load_config(stream))
    ids, recipe, fp = prep.owned_ids(1), prep.recipe, prep.dataset.fingerprint
    keys = [member_key(fp, ids, recipe, s) for s in (1, 2)]
    trained = train_members(prep.dataset, ids, recipe, [1, 2], keys)
    for seed, key, (weights, outputs) in zip((1, 2), keys, trained, strict=True):
        _, solo = train_oracle(prep.dataset, ids, recipe, seed)
        assert outputs.key == key != solo.key  # a member never takes the key of a solo oracle of its seed
        torch.testing.assert_close(outputs.logits_train, solo.logits_train, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(outputs.logits_test, solo.logits_test, rtol=1e-5, atol=1e-5)
        assert set(weights) and all(torch.isfinite(w).all() for w in weights.values())
    # the key names the member's seed, not its index: member 2 of seed 0 is member 1 of seed 1
    assert member_key(fp, ids, recipe, 0 + 2) == keys[1]
    assert oracle_key(fp, ids, recipe, 1) not in keys


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["oracle.ensemble=0"], "oracle.ensemble': must be at least 1"),
        ([f"oracle.seed={2**32 - 2}", "oracle.ensemble=3"], "the last member's seed"),
    ],
)
def test_bad_ensemble_is_refused_before_any_side_effect(stream, tmp_path, sets, message):
    with pytest.raises(UserError, match=message):
        load_config(stream, sets)
    assert not (tmp_path / "oracles").exists()


def test_ensemble_enters_the_config_hash_only_above_one(stream):
    one, default, two = (
        load_config(stream, sets).hash() for sets in (["oracle.ensemble=1"], [], ["oracle.ensemble=2"])
    )
    assert one == default != two


def test_a_pack_too_large_for_memory_is_refused_before_the_grid_starts(stream, tmp_path):
    """One model of this size fits; a pack of fifteen does not, and the set-up path says so before any folder,
    run or cache entry exists."""
    sets = [*FAST, "oracle.ensemble=16", "model.hidden=[16384, 16384]"]
    with pytest.raises(UserError, match="oracle.pack"):
        clutune.compare(stream, methods=["finetune"], seeds=[0], out=tmp_path / "c", overrides=sets, tracking=False)
    assert not (tmp_path / "c").exists() and not (tmp_path / "oracles").exists()
