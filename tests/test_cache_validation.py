"""Every cache fault repaired: an entry is validated on load (meta keys, finite outputs, shapes against the
dataset), a bad one is not counted as present, is retrained once and rewritten; a lease with an impossible pid
protects nothing and is named in a warning."""

from __future__ import annotations

import io
import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
from recipes import tiny_recipe

from clutune.cli import main
from clutune.core.oracle import OracleCache, SplitShape, get_oracle
from clutune.data import load_dataset

RECIPE = tiny_recipe()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _owned(ds) -> torch.Tensor:
    return torch.isin(ds.y_train, torch.tensor([0, 1])).nonzero().flatten()


def _rewrite_outputs(folder: Path, change) -> None:
    blob = torch.load(io.BytesIO((folder / "outputs.pt").read_bytes()), weights_only=True)
    buffer = io.BytesIO()
    torch.save(change(blob), buffer)
    (folder / "outputs.pt").write_bytes(buffer.getvalue())


DAMAGE = {
    "empty-meta": lambda folder: (folder / "meta.json").write_text("{}"),
    "all-nan": lambda folder: _rewrite_outputs(
        folder, lambda b: {**b, "logits_train": torch.full_like(b["logits_train"], float("nan"))}
    ),
    "wrong-shape": lambda folder: _rewrite_outputs(folder, lambda b: {**b, "logits_test": b["logits_test"][:7, :3]}),
    "one-class-short": lambda folder: _rewrite_outputs(
        folder, lambda b: {**b, "logits_train": b["logits_train"][:, :-1], "logits_test": b["logits_test"][:, :-1]}
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_an_invalid_entry_is_absent_then_retrained_once_and_rewritten(tmp_path, digits, damage):
    cache = OracleCache(tmp_path / "oracles")
    first = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    shape = SplitShape.of(digits)
    assert cache.has(first.key, shape)
    DAMAGE[damage](Path(cache.path(first.key)))

    assert not cache.has(first.key, shape)  # a damaged entry is not counted as present
    with pytest.warns(UserWarning, match=rf"{first.key} is invalid .*retrained once and rewritten"):
        again = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    assert again.cached is False and torch.equal(again.logits_train, first.logits_train)
    assert cache.has(first.key, shape)
    third = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    assert third.cached is True and bool(torch.isfinite(third.logits_train).all())


@pytest.mark.parametrize("pid", [0, -1, 1 << 40])
def test_a_lease_with_an_impossible_pid_protects_nothing(tmp_path, digits, capsys, pid):
    cache = OracleCache(tmp_path / "oracles")
    entry = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    old = time.time() - 10 * 86400
    os.utime(cache.path(entry.key), (old, old))
    lease = {"host": socket.gethostname(), "pid": pid, "created": time.time(), "keys": [entry.key]}
    (tmp_path / "oracles" / "leases").mkdir()
    (tmp_path / "oracles" / "leases" / "forged.json").write_text(json.dumps(lease))
    with pytest.warns(UserWarning, match=f"forged.json: impossible pid {pid}"):
        code = main(["oracles", "--prune", "--max-age", "1", "--cache-dir", str(tmp_path / "oracles")])
    assert code == 0
    assert f"removed {entry.key}" in capsys.readouterr().out


def test_a_cache_dir_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a cache")
    assert main(["oracles", "--cache-dir", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0]
    assert (tmp_path / "a-file").read_text() == "not a cache"


def test_max_age_nan_is_refused_before_any_removal(tmp_path, digits, capsys):
    cache = OracleCache(tmp_path / "oracles")
    entry = get_oracle(digits, _owned(digits), RECIPE, 0, cache, keep_weights=False)
    code = main(["oracles", "--prune", "--max-age", "nan", "--cache-dir", str(tmp_path / "oracles")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nan" in err[0]
    assert cache.has(entry.key, SplitShape.of(digits))
