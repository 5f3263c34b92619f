"""Oracles: content-keyed, deterministic, trained on exactly the owned ids, cached whole and reloadable."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from recipes import tiny_recipe

from clutune.clu.training import predict_logits
from clutune.core.config import load_config
from clutune.core.experiment import oracle_for, prepare
from clutune.core.oracle import OracleCache, get_oracle, oracle_key, train_oracle
from clutune.models import build_model

REPO = Path(__file__).resolve().parents[1]
RECIPE = tiny_recipe(hidden=32, epochs=3)


def class_ids(ds, classes) -> torch.Tensor:
    return torch.isin(ds.y_train, torch.tensor(classes)).nonzero().flatten()


# ------------------------------------------------------------------ key and determinism


def test_same_inputs_same_key_and_bit_identical_logits(digits):
    owned = class_ids(digits, [0, 1, 2, 3])
    key = oracle_key(digits.fingerprint, owned, RECIPE, seed=0)
    assert key == oracle_key(digits.fingerprint, owned.flip(0), RECIPE, seed=0)  # order of ids is irrelevant
    _, a = train_oracle(digits, owned, RECIPE, seed=0)
    _, b = train_oracle(digits, owned, RECIPE, seed=0)
    assert a.key == b.key == key
    assert torch.equal(a.logits_train, b.logits_train)
    assert torch.equal(a.logits_test, b.logits_test)
    assert torch.equal(a.trained_ids, b.trained_ids)
    assert a.samples_processed == b.samples_processed == 3 * len(owned)
    assert a.logits_train.shape == (digits.n_train, digits.num_classes)
    assert a.logits_test.shape == (digits.n_test, digits.num_classes)
    # it did learn something: well above chance on the owned classes' test samples
    test_mask = torch.isin(digits.y_test, torch.tensor([0, 1, 2, 3]))
    acc = (a.logits_test[test_mask].argmax(1) == digits.y_test[test_mask]).float().mean()
    assert acc > 0.5


def test_a_different_seed_gives_different_logits(digits):
    owned = class_ids(digits, [0, 1])
    _, a = train_oracle(digits, owned, RECIPE, seed=0)
    _, b = train_oracle(digits, owned, RECIPE, seed=1)
    assert a.key != b.key
    assert not torch.equal(a.logits_test, b.logits_test)


def test_key_changes_with_owned_set_seed_recipe_and_data(digits):
    owned = class_ids(digits, [0, 1, 2, 3])
    base = oracle_key(digits.fingerprint, owned, RECIPE, 0)
    variants = {
        "one id fewer": oracle_key(digits.fingerprint, owned[1:], RECIPE, 0),
        "one id swapped": oracle_key(digits.fingerprint, torch.cat([owned[1:], class_ids(digits, [9])[:1]]), RECIPE, 0),
        "seed": oracle_key(digits.fingerprint, owned, RECIPE, 1),
        "epochs": oracle_key(digits.fingerprint, owned, RECIPE.model_copy(update={"epochs": 4}), 0),
        "lr": oracle_key(digits.fingerprint, owned, RECIPE.model_copy(update={"lr": 0.1}), 0),
        "schedule": oracle_key(digits.fingerprint, owned, RECIPE.model_copy(update={"schedule": "constant"}), 0),
        "architecture": oracle_key(
            digits.fingerprint, owned, RECIPE.model_copy(update={"model": {"name": "mlp", "hidden": [64]}}), 0
        ),
        "data": oracle_key("another-fingerprint", owned, RECIPE, 0),
    }
    for what, key in variants.items():
        assert key != base, what
    assert len(set(variants.values())) == len(variants)


# ------------------------------------------------------------------ trained on exactly the owned ids, via a scenario


def test_scenario_oracles_train_on_exactly_the_owned_ids(tmp_path):
    config = load_config(
        REPO / "clutune" / "presets" / "digits-agnostic-class.yaml",
        [f"oracle.cache_dir={tmp_path / 'oracles'}", "oracle.epochs=2", "model.hidden=[32]", "device=cpu"],
    )
    prep = prepare(config)
    sc = prep.scenario
    assert len(sc) == 8
    n = prep.dataset.n_train
    unlearned_so_far = torch.zeros(n, dtype=torch.bool)
    keys = []
    gone_classes: list[int] = []
    for k, request in enumerate(sc.requests):
        if request.kind == "unlearn":
            unlearned_so_far[request.ids] = True
            gone_classes += request.spec["classes"]
        owned = prep.owned_ids(k)
        oracle = oracle_for(prep, k)
        keys.append(oracle.key)
        trained = oracle.trained_ids
        assert torch.equal(trained, torch.sort(trained).values)
        assert set(trained.tolist()) <= set(owned.tolist())
        assert torch.equal(trained, owned)  # every owned id was seen (epochs >= 1), nothing else
        assert not unlearned_so_far[trained].any()
        assert torch.equal(unlearned_so_far, sc.unlearned(k))
        # the classes unlearned so far are wholly absent from what the oracle trained on
        if gone_classes:
            assert not torch.isin(prep.dataset.y_train[trained], torch.tensor(gone_classes)).any()
    assert gone_classes == [1, 3, 5, 7]
    assert len(set(keys)) == 8  # every request changes the owned set, so every oracle is distinct
    # a second pass over the stream hits the cache for every request
    assert all(oracle_for(prep, k).cached for k in range(8))


# ------------------------------------------------------------------ cache


def test_cache_returns_the_same_oracle_without_retraining(tmp_path, digits):
    cache = OracleCache(tmp_path / "oracles")
    owned = class_ids(digits, [2, 3, 4, 5])
    first = get_oracle(digits, owned, RECIPE, 0, cache)
    assert first.cached is False
    folder = Path(cache.path(first.key))
    assert folder.parent == tmp_path / "oracles"
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "outputs.pt", "weights.pt"]
    assert [p.name for p in (tmp_path / "oracles").iterdir()] == [first.key]  # no leftover temp folders
    meta_path = folder / "meta.json"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    meta = json.loads(meta_path.read_text())
    assert meta["n_owned"] == len(owned)
    assert meta["seed"] == 0
    assert meta["fingerprint"] == digits.fingerprint
    assert meta["recipe"] == RECIPE.model_dump()

    second = get_oracle(digits, owned, RECIPE, 0, cache)
    assert second.cached is True
    assert second.key == first.key
    assert torch.equal(second.logits_train, first.logits_train)
    assert torch.equal(second.logits_test, first.logits_test)
    assert torch.equal(second.trained_ids, first.trained_ids)
    assert second.seconds == first.seconds  # the recorded training time, not a new one
    assert second.samples_processed == first.samples_processed
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps  # nothing rewritten
    assert [p.name for p in (tmp_path / "oracles").iterdir()] == [first.key]

    # another owned set is another entry; the first stays untouched
    other = get_oracle(digits, owned[:-1], RECIPE, 0, cache)
    assert other.cached is False and other.key != first.key
    assert sorted(p.name for p in (tmp_path / "oracles").iterdir()) == sorted([first.key, other.key])
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_cached_weights_reload_into_a_fresh_model(tmp_path, digits):
    cache = OracleCache(tmp_path / "oracles")
    owned = class_ids(digits, [6, 7])
    outputs = get_oracle(digits, owned, RECIPE, 3, cache)
    state = torch.load(Path(cache.path(outputs.key)) / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    torch.manual_seed(12345)  # a different init, overwritten by the load
    model = build_model(RECIPE.model, digits.input_shape, digits.num_classes)
    model.load_state_dict(state)
    assert torch.equal(predict_logits(model, digits.x_train, digits.inputs), outputs.logits_train)
    assert torch.equal(predict_logits(model, digits.x_test, digits.inputs), outputs.logits_test)
    assert cache.load_weights(outputs.key).keys() == state.keys()
