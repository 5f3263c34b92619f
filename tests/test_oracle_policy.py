"""Oracle policies (which requests get an exact oracle) and the bounded oracle cache: weights on request,
least-recently-used pruning by age and size, leases that protect what a running job uses."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from recipes import tiny_recipe

from clutune.cli import main
from clutune.core.config import load_config
from clutune.core.experiment import oracle_for, prepare
from clutune.core.oracle import LEASE_MAX_AGE_S, OracleCache, get_oracle, oracle_requests
from clutune.errors import UserError
from clutune.models import build_model
from clutune.platform.cluster.oracle_pool import plan_oracles

REPO = Path(__file__).resolve().parents[1]
RECIPE = tiny_recipe()
# Seven requests, each changing the owned set, so every request's oracle is a distinct one.
STREAM = """
name: policy-stream
dataset: {name: digits}
model: {name: mlp, hidden: [16]}
oracle: {epochs: 1}
device: cpu
scenario:
  requests:
    - learn: {task: 0}
    - learn: {task: 1}
    - learn: {task: 2}
    - unlearn: {classes: [1]}
    - learn: {task: 3}
    - unlearn: {fraction: 0.1}
    - learn: {task: 4}
"""
DAY = 86400.0


@pytest.fixture
def stream(tmp_path) -> Path:
    path = tmp_path / "stream.yaml"
    path.write_text(STREAM)
    return path


def class_ids(ds, classes) -> torch.Tensor:
    return torch.isin(ds.y_train, torch.tensor(classes)).nonzero().flatten()


def fill(cache: OracleCache, digits, n: int) -> list[str]:
    """n small oracles with last-use stamps one hour apart, oldest first."""
    keys = [
        get_oracle(digits, class_ids(digits, [c, c + 1]), RECIPE, 0, cache, keep_weights=False).key for c in range(n)
    ]
    now = time.time()
    for i, key in enumerate(keys):
        stamp = now - (n - i) * 3600
        os.utime(cache.path(key), (stamp, stamp))
    return keys


# ------------------------------------------------------------------ policies


def test_oracle_requests_for_each_policy():
    kinds = ["learn", "learn", "unlearn", "learn", "unlearn", "learn", "learn"]
    assert oracle_requests("every", 1, kinds) == [True] * 7
    assert oracle_requests("every_k", 3, kinds) == [False, False, True, False, False, True, True]
    assert oracle_requests("every_k", 7, kinds) == [False] * 6 + [True]
    assert oracle_requests("every_k", 1, kinds) == [True] * 7
    assert oracle_requests("unlearn", 1, kinds) == [False, False, True, False, True, False, True]
    assert oracle_requests("final", 1, kinds) == [False] * 6 + [True]
    assert oracle_requests("unlearn", 1, ["learn", "unlearn"]) == [False, True]  # the last is not counted twice
    assert oracle_requests("final", 1, []) == []
    with pytest.raises(UserError, match="sometimes"):
        oracle_requests("sometimes", 1, kinds)


def test_config_validates_policy_and_every(stream):
    with pytest.raises(UserError, match=r"'oracle\.policy'.*every_k") as e:
        load_config(stream, ["oracle.policy=sometimes"])
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"'oracle\.every': must be at least 1"):
        load_config(stream, ["oracle.policy=every_k", "oracle.every=0"])
    config = load_config(stream, ["oracle.policy=every_k", "oracle.every=3", "oracle.keep_weights=true"])
    assert (config.oracle.policy, config.oracle.every, config.oracle.keep_weights) == ("every_k", 3, True)


def test_every_k_plans_and_trains_ceil_n_over_k_oracles(stream, tmp_path):
    sets = [f"oracle.cache_dir={tmp_path / 'oracles'}"]
    every = prepare(load_config(stream, sets))
    prep = prepare(load_config(stream, [*sets, "oracle.policy=every_k", "oracle.every=3", "oracle.keep_weights=true"]))
    n = len(prep.scenario)
    # policy, period and keep_weights choose which oracles exist, never what an oracle is: the keys agree
    assert prep.recipe == every.recipe
    all_keys = plan_oracles(every).key_of_request
    assert len(set(all_keys)) == n

    plan = plan_oracles(prep)
    assert plan.key_of_request == [None, None, all_keys[2], None, None, all_keys[5], all_keys[6]]
    assert len(plan.owned) == math.ceil(n / 3) == 3
    assert plan.missing == [all_keys[2], all_keys[5], all_keys[6]]
    assert plan.request_refs({k: f"ref-{k}" for k in plan.owned}) == [
        None if k is None else f"ref-{k}" for k in plan.key_of_request
    ]

    oracles = [oracle_for(prep, k) for k in range(n)]
    assert [o is not None for o in oracles] == [k is not None for k in plan.key_of_request]
    assert sorted(e.key for e in prep.cache.entries()) == sorted(plan.owned)  # trained exactly those
    assert plan_oracles(prep).missing == []


# ------------------------------------------------------------------ bounded cache


@pytest.mark.parametrize("keep", [False, True])
def test_weights_only_when_kept_and_outputs_reload_either_way(tmp_path, digits, keep):
    cache = OracleCache(tmp_path / "oracles")
    trained = get_oracle(digits, class_ids(digits, [4, 5]), RECIPE, 0, cache, keep_weights=keep)
    files = sorted(p.name for p in Path(cache.path(trained.key)).iterdir())
    assert files == (["meta.json", "outputs.pt", "weights.pt"] if keep else ["meta.json", "outputs.pt"])
    assert [p.name for p in Path(cache.root).iterdir()] == [trained.key]  # no temporary folder left behind
    hit = get_oracle(digits, class_ids(digits, [4, 5]), RECIPE, 0, cache, keep_weights=keep)
    assert hit.cached and not trained.cached
    for name in ("logits_train", "logits_test", "trained_ids"):
        assert torch.equal(getattr(hit, name), getattr(trained, name))
    assert (hit.seconds, hit.samples_processed) == (trained.seconds, trained.samples_processed)
    if keep:
        fresh = build_model(RECIPE.model, digits.input_shape, digits.num_classes)
        assert cache.load_weights(trained.key).keys() == fresh.state_dict().keys()
    else:
        with pytest.raises(UserError, match="keep_weights"):
            cache.load_weights(trained.key)


def test_entries_sizes_and_a_load_marks_use(tmp_path, digits):
    cache = OracleCache(tmp_path / "oracles")
    assert cache.entries() == [] and cache.size_bytes() == 0
    keys = fill(cache, digits, 3)
    entries = cache.entries()
    assert [e.key for e in entries] == keys  # least recently used first
    for e in entries:
        assert e.bytes == sum(p.stat().st_size for p in Path(cache.path(e.key)).iterdir())
    assert cache.size_bytes() == sum(e.bytes for e in entries)
    assert cache.load(keys[0]) is not None
    assert [e.key for e in cache.entries()] == [keys[1], keys[2], keys[0]]


def test_prune_by_size_removes_oldest_first_and_never_a_leased_key(tmp_path, digits):
    cache = OracleCache(tmp_path / "oracles")
    a, b, c, d = fill(cache, digits, 4)
    size = {e.key: e.bytes for e in cache.entries()}
    limit = size[a] + size[d]  # fits once two entries are gone
    with cache.lease([a]) as lease:
        assert json.loads(Path(lease).read_text())["keys"] == [a]
        assert cache.leased_keys() == {a}
        plan = cache.prune_plan(None, limit, set())
        assert (plan.remove, plan.spared) == ([b, c], [a])
        assert cache.prune(None, limit, set()) == [b, c]
    assert not Path(lease).exists()
    assert [e.key for e in cache.entries()] == [a, d]
    assert cache.size_bytes() <= limit
    assert cache.prune(None, limit, set()) == []  # within the limit: nothing to do
    assert cache.prune(None, size[d], set()) == [a]  # the lease is gone, so the oldest goes now
    assert cache.prune(None, 0, {d}) == []  # an explicitly protected key survives any limit
    assert cache.load(d) is not None


def test_prune_by_age(tmp_path, digits):
    cache = OracleCache(tmp_path / "oracles")
    a, b, c = fill(cache, digits, 3)
    old = time.time() - 10 * DAY
    os.utime(cache.path(a), (old, old))
    os.utime(cache.path(b), (old, old))
    assert cache.prune(7 * DAY, None, {b}) == [a]
    assert [e.key for e in cache.entries()] == [b, c]


def test_a_stale_lease_does_not_protect(tmp_path, digits):
    cache = OracleCache(tmp_path / "oracles")
    (a,) = fill(cache, digits, 1)
    # a process that dies inside its lease leaves the file behind, with a pid that is no longer running
    crash = (
        "import os, sys; from clutune.core.oracle import OracleCache; "
        "lease = OracleCache(sys.argv[1]).lease([sys.argv[2]]); lease.__enter__(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", crash, str(cache.root), a], check=True, cwd=REPO)
    (left,) = (Path(cache.root) / "leases").glob("*.json")
    assert json.loads(left.read_text())["keys"] == [a]
    assert cache.leased_keys() == set()

    # another host's lease cannot be checked by pid: honoured, until it is older than LEASE_MAX_AGE_S
    record = json.loads(left.read_text())
    left.write_text(json.dumps({**record, "host": "another-host", "created": time.time()}))
    assert cache.leased_keys() == {a}
    left.write_text(json.dumps({**record, "host": "another-host", "created": time.time() - LEASE_MAX_AGE_S - 60}))
    assert cache.leased_keys() == set()
    assert cache.prune(None, 0, set()) == [a]


# ------------------------------------------------------------------ CLI


def test_cli_prune_needs_a_limit_and_reports_sizes(tmp_path, digits, capsys):
    cache = OracleCache(tmp_path / "oracles")
    a, b = fill(cache, digits, 2)
    size = {e.key: e.bytes for e in cache.entries()}

    assert main(["oracles", "--prune", "--cache-dir", str(cache.root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clutune: error: --prune needs a limit") and err.count("\n") == 1
    assert main(["oracles", "--prune", "--max-size", "2X", "--cache-dir", str(cache.root)]) == 2
    assert "--max-size '2X'" in capsys.readouterr().err
    assert main(["oracles"]) == 2
    capsys.readouterr()

    assert main(["oracles", "--cache-dir", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert f"cache {cache.root}: 2 oracles, " in out

    with cache.lease([a]):
        assert main(["oracles", "--prune", "--max-size", f"{size[b]}", "--cache-dir", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert f"kept {a}" in out and "lease" in out
    assert f"removed {b}" in out
    assert f"cache {cache.root}: 1 oracles, " in out
    assert main(["oracles", "--prune", "--max-age", "0", "--cache-dir", str(cache.root)]) == 0
    assert f"removed {a}" in capsys.readouterr().out
    assert cache.entries() == []


def test_cli_oracles_counts_only_what_the_policy_needs(stream, tmp_path, capsys):
    sets = [f"oracle.cache_dir={tmp_path / 'oracles'}", "oracle.policy=final"]
    prep = prepare(load_config(stream, sets))
    assert oracle_for(prep, len(prep.scenario) - 1) is not None  # train the one oracle here: no Ray needed
    assert main(["oracles", "--config", str(stream), *[x for s in sets for x in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "1 distinct oracles for 7 requests (oracle.policy final: 1 get one); 1 already cached" in out
    assert f"cache {prep.cache.root}: 1 oracles, " in out
