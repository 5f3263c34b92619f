"""Packed oracle training: each member of a pack is the oracle it would be alone (same seed, same owned ids), to
float rounding after an epoch and well inside the retrain noise floor after the full recipe; models the packed
trainer does not know train one at a time with one line saying so; a pack's memory is checked first."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.packed import batched_gradients, choose_gradients, unpackable_reason, vmap_gradients
from clutune.core.config import OracleConfig, load_config
from clutune.core.oracle import OracleRecipe, train_oracle
from clutune.core.packed_oracles import MemberSpec, train_oracle_pack, train_oracles
from clutune.data import load_dataset
from clutune.errors import UserError
from clutune.models import build_model

MLP = {"name": "mlp", "hidden": [128]}
CNN = {"name": "cnn", "width": 8}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digit_images(digits):
    """The same digits as 1x8x8 images, for the convolutional model."""
    return dataclasses.replace(digits, x_train=digits.x_train.view(-1, 1, 8, 8), x_test=digits.x_test.view(-1, 1, 8, 8))


def recipe(model: dict, epochs: int, augment: bool = False) -> OracleRecipe:
    return OracleRecipe.from_config(OracleConfig(), model).model_copy(update={"epochs": epochs, "augment": augment})


def owned_sets(ds, sizes: list[int]) -> list[torch.Tensor]:
    """Different owned ids per member, of different sizes (so members take different numbers of steps)."""
    draws = [torch.Generator().manual_seed(100 + i) for i in range(len(sizes))]
    return [torch.randperm(ds.n_train, generator=g)[:n] for g, n in zip(draws, sizes, strict=True)]


def relative_error(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((p - q).norm() / q.norm()) for p, q in pairs)


@pytest.mark.parametrize(("model", "augment"), [(MLP, False), (CNN, True)], ids=["mlp", "cnn-augmented"])
def test_one_epoch_equals_each_member_trained_alone(request, model, augment):
    ds = request.getfixturevalue("digits" if model is MLP else "digit_images")
    r = recipe(model, epochs=1, augment=augment)
    specs = [MemberSpec(seed, ids) for seed, ids in zip((0, 1, 7), owned_sets(ds, [1000, 700, 333]), strict=True)]
    packed = train_oracles(ds, specs, r, pack=2)  # two packs: 2 members, then 1
    assert len(packed) == len(specs)
    for spec, (model_p, out_p) in zip(specs, packed, strict=True):
        model_s, out_s = train_oracle(ds, spec.owned_ids, r, spec.seed)
        assert relative_error(model_p, model_s) < 1e-5
        assert out_p.key == out_s.key
        assert torch.equal(out_p.trained_ids, out_s.trained_ids)
        assert torch.equal(out_p.trained_ids, spec.owned_ids.sort().values)
        assert out_p.samples_processed == out_s.samples_processed == len(spec.owned_ids)
        assert torch.allclose(out_p.logits_test, out_s.logits_test, atol=1e-4)


@pytest.mark.parametrize("model", [MLP, CNN], ids=["mlp", "cnn"])
def test_both_gradient_ways_train_the_same_models(request, model):
    ds = request.getfixturevalue("digits" if model is MLP else "digit_images")
    r = recipe(model, epochs=1)
    specs = [MemberSpec(seed, ids) for seed, ids in zip((0, 1), owned_sets(ds, [500, 300]), strict=True)]
    batched = train_oracle_pack(ds, specs, r, batched_gradients)
    vmapped = train_oracle_pack(ds, specs, r, vmap_gradients)
    for (a, _), (b, _) in zip(batched, vmapped, strict=True):
        assert relative_error(a, b) < 1e-5


def test_the_gradient_rule_follows_the_benchmark():
    wide, narrow = build_model({"name": "mlp", "hidden": [256, 256]}, (40,), 10), build_model(MLP, (64,), 10)
    assert choose_gradients(wide, 16) is vmap_gradients and choose_gradients(wide, 64) is vmap_gradients
    assert choose_gradients(wide, 4) is batched_gradients
    assert choose_gradients(narrow, 64) is batched_gradients
    assert choose_gradients(build_model({"name": "cnn"}, (1, 8, 8), 10), 64) is batched_gradients


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """Mean over samples of KL(p || q) between the softmax predictions."""
    p, q = F.log_softmax(p_logits.double(), 1), F.log_softmax(q_logits.double(), 1)
    return float((p.exp() * (p - q)).sum(1).mean())


@pytest.mark.slow
@pytest.mark.parametrize("model", [MLP, CNN], ids=["mlp", "cnn"])
def test_full_recipe_stays_far_inside_the_retrain_noise_floor(request, model):
    ds = request.getfixturevalue("digits" if model is MLP else "digit_images")
    r = recipe(model, epochs=OracleConfig().epochs)
    shared, other = owned_sets(ds, [600, 400])
    specs = [MemberSpec(0, shared), MemberSpec(1, shared), MemberSpec(2, shared), MemberSpec(3, other)]
    packed = [out for _, out in train_oracles(ds, specs, r)]
    solo = [train_oracle(ds, s.owned_ids, r, s.seed)[1] for s in specs]
    # The floor: solo oracles of different seeds on the same owned ids, on those ids.
    on_shared = [o.logits_train[shared] for o in solo[:3]]
    floor = sum(kl(a, b) for i, a in enumerate(on_shared) for j, b in enumerate(on_shared) if i != j) / 6
    assert floor > 0
    for spec, p, s in zip(specs, packed, solo, strict=True):
        assert kl(s.logits_train[spec.owned_ids], p.logits_train[spec.owned_ids]) < 0.01 * floor


class Gated(nn.Module):
    """A model of the kind a plugin brings: its own forward, which the packed trainer cannot know."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, 10), nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) * torch.sigmoid(self.b(x))


def test_which_models_can_be_packed():
    assert unpackable_reason(build_model(MLP, (64,), 10)) is None
    assert unpackable_reason(build_model(CNN, (1, 8, 8), 10)) is None
    assert "Gated" in unpackable_reason(Gated())
    assert "Dropout" in unpackable_reason(nn.Sequential(nn.Linear(64, 10), nn.Dropout(0.5)))
    assert "batch norm in training mode" in unpackable_reason(nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8)))


def test_an_unpackable_model_trains_one_at_a_time_with_one_line(digit_images):
    r = recipe({"name": "resnet18_cifar"}, epochs=1)  # batch norm in training mode
    specs = [MemberSpec(seed, ids) for seed, ids in zip((0, 1), owned_sets(digit_images, [64, 40]), strict=True)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = train_oracle_pack(digit_images, specs, r)
    lines = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "resnet18_cifar" in lines[0] and "batch norm in training mode" in lines[0] and "one at a time" in lines[0]
    for spec, (_, out) in zip(specs, packed, strict=True):
        _, alone = train_oracle(digit_images, spec.owned_ids, r, spec.seed)
        assert torch.equal(out.logits_test, alone.logits_test)  # it is the solo path


def test_a_pack_too_large_for_memory_is_one_line_before_any_work(digits):
    wide = recipe({"name": "mlp", "hidden": [1 << 16]}, epochs=1)
    specs = [MemberSpec(seed, torch.arange(64)) for seed in range(4096)]
    with pytest.raises(UserError, match="'oracle.pack': a packed training step of 4096 mlp models needs about") as e:
        train_oracles(digits, specs, wide, pack=4096)
    assert "\n" not in str(e.value)


def test_oracle_pack_is_validated_and_left_out_of_the_config_hash():
    with pytest.raises(UserError, match="'oracle.pack': must be at least 1"):
        load_config("digits-random", {"oracle.pack": 0})
    assert load_config("digits-random", {"oracle.pack": 4}).hash() == load_config("digits-random").hash()
