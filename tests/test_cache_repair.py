"""Caches that repair themselves: a damaged oracle entry is treated as absent, retrained once and rewritten with a
warning; a non-finite oracle is never cached; a malformed lease is ignored with a warning naming it."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
from recipes import tiny_recipe

from clutune.cli import main
from clutune.core.oracle import OracleCache, OracleDiverged, OracleOutputs, get_oracle

RECIPE = tiny_recipe()


def _owned(ds) -> torch.Tensor:
    return torch.isin(ds.y_train, torch.tensor([0, 1])).nonzero().flatten()


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_a_damaged_entry_is_retrained_once_and_rewritten(tmp_path, digits, damage):
    cache = OracleCache(tmp_path / "oracles")
    first = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    outputs = Path(cache.path(first.key)) / "outputs.pt"
    if damage == "missing":
        outputs.unlink()  # a prune racing a store leaves meta.json without its data
    elif damage == "truncated":
        outputs.write_bytes(outputs.read_bytes()[:100])
    else:
        outputs.write_bytes(b"not a torch file at all")

    with pytest.warns(UserWarning, match=rf"{first.key}.*retrained once and rewritten"):
        again = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    assert again.cached is False  # retrained
    assert torch.equal(again.logits_train, first.logits_train)  # deterministic: the same oracle
    third = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    assert third.cached is True  # rewritten: served from the cache from now on
    assert sorted(p.name for p in Path(cache.path(first.key)).iterdir()) == ["meta.json", "outputs.pt"]


def test_a_non_finite_oracle_is_never_cached(tmp_path, digits):
    cache = OracleCache(tmp_path / "oracles")
    n, c = len(digits.y_train), digits.num_classes
    nan = OracleOutputs(
        key="nan-oracle",
        logits_train=torch.full((n, c), float("nan")),
        logits_test=torch.zeros(len(digits.y_test), c),
        trained_ids=_owned(digits),
        seconds=1.0,
        samples_processed=1,
    )
    with pytest.raises(OracleDiverged, match="not finite.*not cached"):
        cache.store(nan, {}, None)
    assert not cache.has("nan-oracle") and cache.entries() == []
    assert not (tmp_path / "oracles" / "nan-oracle").exists()


def test_the_cli_fails_a_diverged_oracle_in_one_line_and_caches_nothing(tmp_path, monkeypatch, capsys):
    """The recipe's range check stops NaN rates; a recipe in range that still diverges (rate and decay at
    their limits) ends with exit 1 and one line, and leaves no entry a later run would trust."""
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    sets = ["oracle.lr=1000", "oracle.momentum=0.99", "oracle.weight_decay=1000", "oracle.epochs=3"]
    sets += [f"oracle.cache_dir={cache}"]
    argv = ["run", "--config", "digits-random", "--method", "finetune", "--out", str(tmp_path / "out")]
    code = main([*argv, "--no-tracking", *(a for s in sets for a in ("--set", s))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "not finite" in err[0]
    assert OracleCache(cache).entries() == []


def _lease(root: Path, name: str, text: str) -> None:
    (root / "leases").mkdir(parents=True, exist_ok=True)
    (root / "leases" / name).write_text(text)


def test_prune_ignores_a_malformed_lease_with_a_warning_naming_it(tmp_path, digits, capsys):
    cache = OracleCache(tmp_path / "oracles")
    entry = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    old = time.time() - 10 * 86400
    os.utime(cache.path(entry.key), (old, old))
    root = tmp_path / "oracles"
    _lease(root, "broken-1.json", json.dumps({"host": socket.gethostname()}))  # no pid, no keys
    _lease(root, "broken-2.json", "{not json")
    _lease(root, "broken-3.json", json.dumps(["a", "list"]))
    with pytest.warns(UserWarning) as caught:
        code = main(["oracles", "--prune", "--max-age", "1", "--cache-dir", str(root)])
    assert code == 0
    named = " ".join(str(w.message) for w in caught)
    for name in ("broken-1.json", "broken-2.json", "broken-3.json"):
        assert name in named
    assert f"removed {entry.key}" in capsys.readouterr().out  # the malformed leases protected nothing
