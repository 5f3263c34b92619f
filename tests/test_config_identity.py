"""The config hash and the oracle cache keys of every shipped preset, pinned: existing caches stay valid.

An identity field that changes (added, renamed, given another default) changes these values, so this test fails
until the field declares itself outside the identity (or in it only when set), or the identity version is bumped
with a new pinned table.
"""

from __future__ import annotations

import pytest
import torch

from clutune.core.config import HASH_VERSION, OracleConfig, load_config, preset_names
from clutune.core.experiment import oracle_for, prepare
from clutune.core.identity import Identity, identity
from clutune.core.oracle import FORMAT_VERSION, OracleCache, OracleOutputs, OracleRecipe, oracle_key
from clutune.core.settings import Int, setting

# The config hash of each preset, by clutune.core.config.HASH_VERSION: a new version needs a new table.
HASHES = {
    1: {
        "cifar10-agnostic-class": "942f777e8d5e",
        "cifar10-fast-oracle": "e985f3916631",
        "cifar10-long-50": "2028551a397f",
        "cifar10-mu-random": "bb46a4e6bdc2",
        "cifar10-random": "20b6ea36d6be",
        "cifar10-task-aware": "2bc2f4ae4360",
        "digits-agnostic-class": "72b2a5faa920",
        "digits-long-200": "b542499de1f5",
        "digits-mu-random": "ba9983793809",
        "digits-rigorous": "7296bef272aa",
        "digits-random": "cd629bacdd73",
        "digits-task-aware": "933b5afcc912",
        "mnist1d-agnostic-class": "3d19930b8c5a",
        "mnist1d-long-1000": "9eda221d9c6f",
        "mnist1d-random": "0e4861063520",
        "mnist1d-task-aware": "b251813e4161",
        "tinyimagenet-agnostic-class": "12abd83802bb",
        "tinyimagenet-random": "b575de6fd833",
        "tinyimagenet-task-aware": "95e6db691384",
    },
}
# The oracle key of each preset's recipe for the owned set PINNED_IDS under a fixed fingerprint, by
# clutune.core.oracle.FORMAT_VERSION.
ORACLE_KEYS = {
    1: {
        "cifar10-agnostic-class": "346e7b928c918c5df1c6dff8",
        "cifar10-fast-oracle": "80ec48804294bcbf5e5d5f06",
        "cifar10-long-50": "346e7b928c918c5df1c6dff8",
        "cifar10-mu-random": "346e7b928c918c5df1c6dff8",
        "cifar10-random": "346e7b928c918c5df1c6dff8",
        "cifar10-task-aware": "346e7b928c918c5df1c6dff8",
        "digits-agnostic-class": "6ad7577d69cf8c87c344e60b",
        "digits-long-200": "6ad7577d69cf8c87c344e60b",
        "digits-mu-random": "6ad7577d69cf8c87c344e60b",
        "digits-rigorous": "6ad7577d69cf8c87c344e60b",
        "digits-random": "6ad7577d69cf8c87c344e60b",
        "digits-task-aware": "6ad7577d69cf8c87c344e60b",
        "mnist1d-agnostic-class": "085750ebe8884375b4c3e760",
        "mnist1d-long-1000": "085750ebe8884375b4c3e760",
        "mnist1d-random": "085750ebe8884375b4c3e760",
        "mnist1d-task-aware": "085750ebe8884375b4c3e760",
        "tinyimagenet-agnostic-class": "de2da608cbd595e9461fc6ed",
        "tinyimagenet-random": "de2da608cbd595e9461fc6ed",
        "tinyimagenet-task-aware": "de2da608cbd595e9461fc6ed",
    },
}
PINNED_IDS = torch.arange(0, 1000, 3)
# digits-random on the real digits data: the oracle key of request 0, as the cache holds it
DIGITS_RANDOM_REQUEST0 = "f6c4821725c799294b53b39d"


def test_every_preset_is_pinned_at_the_current_versions():
    assert sorted(HASHES[HASH_VERSION]) == preset_names()
    assert sorted(ORACLE_KEYS[FORMAT_VERSION]) == preset_names()


@pytest.mark.parametrize("preset", preset_names())
def test_config_hash_and_oracle_key_of_each_preset_are_unchanged(preset):
    config = load_config(preset)
    recipe = OracleRecipe.from_config(config.oracle, config.model.spec(), config.compute)
    assert config.hash() == HASHES[HASH_VERSION][preset]
    assert (
        oracle_key("pinned-fingerprint", PINNED_IDS, recipe, config.oracle.seed) == ORACLE_KEYS[FORMAT_VERSION][preset]
    )


def test_a_new_field_enters_the_identity_unless_it_declares_otherwise():
    class Plain(OracleConfig):
        pack: Int = 1

    class WhenSet(OracleConfig):
        pack: Int = setting(1, ge=1, identity=Identity.WHEN_SET)

    class Excluded(OracleConfig):
        pack: Int = setting(1, ge=1, identity=Identity.EXCLUDED)

    today = identity(OracleConfig())
    assert identity(Plain()) == {**today, "pack": 1}
    assert identity(WhenSet()) == today and identity(WhenSet(pack=4)) == {**today, "pack": 4}
    assert identity(Excluded(pack=4)) == today


def test_settings_outside_the_identity_leave_it_unchanged():
    base = load_config("digits-random")
    moved = load_config(
        "digits-random",
        {
            "seed": 5,
            "threads": 2,
            "sweep.sampler": "tpe",
            "oracle.cache_dir": "/elsewhere",
            "oracle.keep_weights": True,
            "compute.eval_batch_size": 64,
            "compute.channels_last": True,
            "methods.er.lr": 0.5,
        },
    )
    assert moved.hash() == base.hash()
    for changed in (
        {"oracle.epochs": 3},
        {"dataset.samples": None, "model.hidden": [64]},
        {"compute.precision": "bf16"},
    ):
        assert load_config("digits-random", changed).hash() != base.hash(), changed


def test_an_oracle_cached_before_the_typed_config_is_still_served(tmp_path):
    """An entry stored under the key pinned from the old code, through the real cache, is what a run loads."""
    config = load_config("digits-random", {"oracle.cache_dir": str(tmp_path / "cache")})
    prep = prepare(config)
    n_train, n_test = len(prep.dataset.y_train), len(prep.dataset.y_test)
    logits_train = torch.linspace(-1, 1, n_train * 10).reshape(n_train, 10)
    stored = OracleOutputs(
        key=DIGITS_RANDOM_REQUEST0,
        logits_train=logits_train,
        logits_test=torch.zeros(n_test, 10),
        trained_ids=prep.owned_ids(0),
        seconds=1.5,
        samples_processed=7,
    )
    OracleCache(tmp_path / "cache").store(stored, {"dataset": "digits"}, None)
    served = oracle_for(prep, 0)
    assert served is not None and served.cached and served.key == DIGITS_RANDOM_REQUEST0
    assert torch.equal(served.logits_train, logits_train) and served.samples_processed == 7
