"""The Part A metric functions against hand values and synthetic extremes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clutune.core.metrics import (
    SPLITS,
    SVC_MAX_TARGETS,
    Split,
    entropy,
    forgetting,
    kl_per_sample,
    mia_efficacy,
    mia_member_rate,
    request_metrics,
    softmax64,
    svc_targets,
)

# ------------------------------------------------------------------ KL


def random_probs(rng: np.random.Generator, n: int, c: int = 10) -> np.ndarray:
    return softmax64(rng.normal(0, 3, (n, c)))


def test_kl_of_a_model_to_itself_is_zero():
    rng = np.random.default_rng(0)
    p = random_probs(rng, 200)
    p[0] = np.eye(10)[3]  # a one-hot row, exercising the clamp on both sides
    kl = kl_per_sample(p, p)
    assert kl.shape == (200,)
    assert np.all(kl == 0.0)


def test_kl_hand_values_with_clamp():
    # KL(p_o || p_m) = sum_c p_o,c (log p_o,c - log p_m,c), probabilities clamped to >= 1e-12.
    p_o = np.array([[1.0, 0.0], [0.5, 0.5], [0.7, 0.3]])
    p_m = np.array([[0.5, 0.5], [1.0, 0.0], [0.7, 0.3]])
    eps = 1e-12
    expected = np.array(
        [
            1.0 * (math.log(1.0) - math.log(0.5)) + eps * (math.log(eps) - math.log(0.5)),
            0.5 * (math.log(0.5) - math.log(1.0)) + 0.5 * (math.log(0.5) - math.log(eps)),
            0.0,
        ]
    )
    kl = kl_per_sample(p_o, p_m)
    np.testing.assert_allclose(kl, expected, rtol=0, atol=1e-15)
    # the clamp is what keeps the second row finite: about 0.5 * log(0.5 / 1e-12) - 0.5 * log 2
    assert kl[1] == pytest.approx(0.5 * math.log(0.5 / 1e-12) + 0.5 * math.log(0.5), rel=1e-12)
    assert kl[0] == pytest.approx(math.log(2), abs=1e-10)
    # not symmetric
    assert kl_per_sample(p_m[:1], p_o[:1])[0] != pytest.approx(kl[0])


def test_kl_is_computed_in_float64():
    p_o = np.array([[0.6, 0.4]], dtype=np.float32)
    p_m = np.array([[0.59, 0.41]], dtype=np.float32)
    kl = kl_per_sample(p_o, p_m)
    assert kl.dtype == np.float64
    po, pm = p_o.astype(np.float64), p_m.astype(np.float64)
    assert kl[0] == pytest.approx(float((po * np.log(po / pm)).sum()), rel=1e-12)


def make_splits(rng: np.random.Generator, same: bool, n_learn: int = 0) -> dict[str, Split]:
    sizes = {"remain": 120, "learn": n_learn, "unlearn": 40, "test": 80}
    out, start = {}, 0
    for name in SPLITS:
        n = sizes[name]
        ids = np.arange(n) if name == "test" else np.arange(start, start + n)
        if name != "test":
            start += n
        p_model = random_probs(rng, n)
        p_oracle = p_model.copy() if same else random_probs(rng, n)
        out[name] = Split(ids, rng.integers(0, 10, n), p_model, p_oracle)
    return out


@pytest.mark.parametrize("n_learn", [0, 30])
def test_request_metrics_of_a_model_equal_to_its_oracle(n_learn):
    splits = make_splits(np.random.default_rng(1), same=True, n_learn=n_learn)
    m = request_metrics(splits, is_learn=n_learn > 0)
    for name in SPLITS:
        if name == "learn" and n_learn == 0:
            assert math.isnan(m["kl_oracle_learn"])
            assert math.isnan(m["acc_learn"])
            assert math.isnan(m["gap_learn"])
            continue
        assert m[f"kl_oracle_{name}"] == 0.0
        assert m[f"gap_{name}"] == 0.0
        assert m[f"acc_{name}"] == m[f"oracle_acc_{name}"]
    assert m["kl_oracle_all"] == 0.0
    assert m["mia_member_rate"] == m["oracle_mia_member_rate"]
    assert m["mia_efficacy"] == m["oracle_mia_efficacy"]
    assert not math.isnan(m["mia_member_rate"])
    assert m["avg_gap"] == 0.0


def test_request_metrics_kl_all_is_the_mean_over_every_sample_once():
    splits = make_splits(np.random.default_rng(2), same=False, n_learn=25)
    m = request_metrics(splits, is_learn=True)
    per = np.concatenate([kl_per_sample(s.p_oracle, s.p_model) for s in splits.values()])
    assert m["kl_oracle_all"] == pytest.approx(per.mean(), rel=1e-12)
    assert m["kl_oracle_all"] > 0
    sizes = {k: len(s) for k, s in splits.items()}
    weighted = sum(m[f"kl_oracle_{k}"] * sizes[k] for k in SPLITS) / sum(sizes.values())
    assert m["kl_oracle_all"] == pytest.approx(weighted, rel=1e-12)


def test_request_metrics_mia_nan_while_nothing_is_unlearned():
    splits = make_splits(np.random.default_rng(3), same=False, n_learn=25)
    empty = splits["unlearn"]
    splits["unlearn"] = Split(empty.ids[:0], empty.labels[:0], empty.p_model[:0], empty.p_oracle[:0])
    m = request_metrics(splits, is_learn=True)
    for key in ("mia_member_rate", "mia_efficacy", "oracle_mia_member_rate", "oracle_mia_efficacy"):
        assert math.isnan(m[key])
    assert math.isnan(m["kl_oracle_unlearn"])
    gaps = [m["gap_remain"], m["gap_learn"], m["gap_test"]]
    assert m["avg_gap"] == pytest.approx(float(np.mean(gaps)))


def test_the_svc_classifies_a_fixed_spread_sample_of_a_large_forgotten_split():
    rng = np.random.default_rng(5)
    ids = rng.permutation(200_000)[: SVC_MAX_TARGETS * 5]
    chosen = svc_targets(ids)
    assert len(chosen) == SVC_MAX_TARGETS and len(set(chosen.tolist())) == SVC_MAX_TARGETS
    assert np.array_equal(chosen, svc_targets(ids))  # the same sample every time
    # spread over the split (the stream), not its first or last part: every fifth holds about a fifth
    assert all(
        abs(np.sum((chosen >= q * len(ids) // 5) & (chosen < (q + 1) * len(ids) // 5)) - 400) < 80 for q in range(5)
    )
    # a sample once chosen stays chosen as the split grows, unless one with a lower hash arrives
    grown = np.concatenate([ids, rng.permutation(np.arange(200_000, 400_000))[:2_000]])
    kept = set(ids[chosen].tolist()) & set(grown[svc_targets(grown)].tolist())
    assert len(kept) > 0.7 * SVC_MAX_TARGETS
    small = ids[:SVC_MAX_TARGETS]
    assert np.array_equal(svc_targets(small), np.arange(SVC_MAX_TARGETS))  # up to the cap: every sample


def test_mia_efficacy_of_a_large_split_is_that_of_its_fixed_sample():
    splits = make_splits(np.random.default_rng(6), same=False, n_learn=25)
    big = 3 * SVC_MAX_TARGETS
    rng = np.random.default_rng(7)
    unl = Split(
        np.arange(10_000, 10_000 + big), rng.integers(0, 10, big), random_probs(rng, big), random_probs(rng, big)
    )
    splits["unlearn"] = unl
    owned = [splits["remain"], splits["learn"]]
    owned_ids = np.concatenate([x.ids for x in owned])
    first = np.argsort(owned_ids, kind="stable")[: min(len(splits["test"]), 1000)]
    owned_p = np.concatenate([x.p_model for x in owned])[first]
    owned_y = np.concatenate([x.labels for x in owned])[first]
    n = len(first)
    t = svc_targets(unl.ids)
    expected = mia_efficacy(
        owned_p[np.arange(n), owned_y],
        splits["test"].p_model[np.arange(n), splits["test"].labels[:n]],
        unl.p_model[t, unl.labels[t]],
    )
    assert request_metrics(splits, is_learn=False)["mia_efficacy"] == pytest.approx(expected, abs=0)


# ------------------------------------------------------------------ membership inference


@pytest.fixture
def separable():
    rng = np.random.default_rng(4)
    members = np.abs(rng.normal(0.0, 0.02, 400))  # e.g. entropy of confident training predictions, ~0
    nonmembers = 2.0 + rng.normal(0.0, 0.05, 400)  # entropy ~2
    like_members = np.abs(rng.normal(0.0, 0.02, 150))
    like_nonmembers = 2.0 + rng.normal(0.0, 0.05, 150)
    return members, nonmembers, like_members, like_nonmembers


def test_mia_member_rate_extremes_on_separable_features(separable):
    members, nonmembers, like_members, like_nonmembers = separable
    assert mia_member_rate(members, nonmembers, like_members) >= 0.99
    assert mia_member_rate(members, nonmembers, like_nonmembers) <= 0.01


def test_mia_efficacy_extremes_on_separable_features(separable):
    members, nonmembers, like_members, like_nonmembers = separable
    assert mia_efficacy(members, nonmembers, like_members) <= 0.01  # still looks trained on: not forgotten
    assert mia_efficacy(members, nonmembers, like_nonmembers) >= 0.99  # looks unseen: forgotten


def test_mia_on_inseparable_features_cannot_tell_members_apart():
    """Members and non-members from one distribution: the attack has no signal, so a member-like target and a
    non-member-like target score alike, and the balanced logistic regression calls about half of them member."""
    rng = np.random.default_rng(5)
    members = rng.uniform(0.0, 1.0, 400)
    nonmembers = rng.uniform(0.0, 1.0, 400)  # equal sizes, as for mia_efficacy's n_test owned vs test
    target_a = rng.uniform(0.0, 1.0, 300)
    target_b = rng.uniform(0.0, 1.0, 300)

    rate_a = mia_member_rate(members, nonmembers, target_a)
    rate_b = mia_member_rate(members, nonmembers, target_b)
    assert 0.2 <= rate_a <= 0.8
    assert 0.2 <= rate_b <= 0.8
    assert abs(rate_a - rate_b) < 0.15
    # the attack on its own training sets: the members are called member about as often as non-members
    assert abs(mia_member_rate(members, nonmembers, members) - mia_member_rate(members, nonmembers, nonmembers)) < 0.15

    eff_a = mia_efficacy(members, nonmembers, target_a)
    eff_b = mia_efficacy(members, nonmembers, target_b)
    assert 0.1 <= eff_a <= 0.9
    assert 0.1 <= eff_b <= 0.9
    assert abs(eff_a - eff_b) < 0.15
    assert abs(mia_efficacy(members, nonmembers, members) - mia_efficacy(members, nonmembers, nonmembers)) < 0.2


def test_mia_values_are_shares_of_the_target():
    rng = np.random.default_rng(6)
    members = rng.normal(0.0, 0.02, 200)
    nonmembers = rng.normal(2.0, 0.02, 200)
    # 30 member-like and 70 non-member-like targets: 30% members, 70% forgotten
    target = np.concatenate([rng.normal(0.0, 0.02, 30), rng.normal(2.0, 0.02, 70)])
    assert mia_member_rate(members, nonmembers, target) == pytest.approx(0.3)
    assert mia_efficacy(members, nonmembers, target) == pytest.approx(0.7)


def test_mia_nan_on_empty_target(separable):
    members, nonmembers, _, _ = separable
    empty = np.empty(0)
    assert math.isnan(mia_member_rate(members, nonmembers, empty))
    assert math.isnan(mia_efficacy(members, nonmembers, empty))


def test_entropy_of_one_hot_and_uniform():
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    h = entropy(p)
    assert h[0] == pytest.approx(0.0, abs=1e-9)
    assert h[1] == pytest.approx(math.log(4))


# ------------------------------------------------------------------ forgetting


def test_forgetting_hand_value():
    histories = [[0.9, 0.8, 0.6], [0.5, 0.7, 0.7], [1.0]]
    # task 0: best earlier 0.9, now 0.6 -> 0.3; task 1: best earlier 0.7, now 0.7 -> 0; task 2 learned now: skipped
    assert forgetting(histories) == pytest.approx(0.15, abs=1e-12)


def test_forgetting_can_be_negative_when_a_task_improves():
    assert forgetting([[0.4, 0.6]]) == pytest.approx(-0.2, abs=1e-12)


@pytest.mark.parametrize("histories", [[], [[1.0]], [[0.3], [0.8]]])
def test_forgetting_zero_when_no_task_qualifies(histories):
    assert forgetting(histories) == 0.0
