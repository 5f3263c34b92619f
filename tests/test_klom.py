"""KLoM's two estimators against known answers: EasyDUB's definition, closed-form KLs and issue #32's table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from clutune.core.klom import (
    binned_kl,
    klom_grid,
    klom_with_floor,
    margins,
    markdown,
    normal_kl,
    per_sample,
    summarise,
)
from clutune.errors import UserError

# Issue #32's measurements on synthetic normal margins (2,000 draws a cell): (method models, oracle models) ->
# binned median on identical distributions, binned 1-sd AUC, normal-fit median, normal-fit AUC.
ISSUE_TABLE = {
    (5, 8): (7.60, 0.57, 0.27, 0.75),
    (8, 32): (2.19, 0.69, 0.12, 0.89),
    (8, 64): (1.22, 0.77, 0.11, 0.91),
    (16, 64): (0.95, 0.84, 0.06, 0.98),
    (64, 64): (0.54, 0.95, 0.02, 1.00),
}
DRAWS = 2000
# The issue's binned AUCs sit 0.02-0.05 above what independent replications of its stated protocol give (eight
# replications of 2,000 draws agree within 0.007 of each other: see bench/results/klom_power.md), so its probe
# drew differently in a way it does not state; the binned AUC is held to that documented gap.
BINNED_AUC_GAP = 0.06


def _reference_binned(p_arr: np.ndarray, q_arr: np.ndarray) -> float:
    """EasyDUB's compute_binned_KL_div, written out step by step for one sample."""
    p_arr, q_arr = np.clip(p_arr, -100, 100), np.clip(q_arr, -100, 100)
    start, end = min(p_arr.min(), q_arr.min()), max(p_arr.max(), q_arr.max())
    if start >= end:
        end = start + 1
    bins = np.linspace(start, end, 21)
    p_counts = np.array([np.sum(np.digitize(p_arr, bins) == i) for i in range(1, 21)])
    q_counts = np.array([np.sum(np.digitize(q_arr, bins) == i) for i in range(1, 21)])
    p = p_counts / p_counts.sum() if p_counts.sum() > 0 else np.zeros(20)
    q = q_counts / q_counts.sum() if q_counts.sum() > 0 else np.zeros(20)
    return float(stats.entropy(p, np.where(p > 0, np.maximum(q, 1e-5), q)))


def test_binned_on_a_hand_worked_example_drops_the_joint_maximum():
    # Joint range [0, 4], 20 bins of width 0.2. The method's 4 and the oracle's 4 equal the joint maximum and fall
    # in no bin, so p = 1/3 in bins 1, 6, 11 and q = 2/3 in bin 1, 1/3 in bin 16. Bins 6 and 11 get q = 1e-5,
    # and q is renormalised by its new total 1 + 2e-5.
    method = np.array([[0.0], [1.1], [2.1], [4.0]])
    oracle = np.array([[0.0], [0.1], [3.1], [4.0]])
    total = 1 + 2e-5
    expected = (math.log((1 / 3) / ((2 / 3) / total)) + 2 * math.log((1 / 3) / (1e-5 / total))) / 3
    assert binned_kl(method, oracle)[0] == pytest.approx(expected, rel=1e-12)
    assert _reference_binned(method[:, 0], oracle[:, 0]) == pytest.approx(expected, rel=1e-12)
    # all models equal: a zero range becomes width 1, everything in bin 1, no divergence
    assert binned_kl(np.full((3, 1), 2.5), np.full((5, 1), 2.5))[0] == 0.0
    # the method's only counted values are at the joint maximum: no distribution, NaN as the reference gives
    assert math.isnan(binned_kl(np.array([[1.0], [1.0]]), np.array([[0.0], [0.5]]))[0])


def test_binned_equals_the_reference_sample_by_sample():
    rng = np.random.default_rng(7)
    method = np.round(rng.normal(0.5, 2.0, size=(6, 300)), 1)  # rounded: values land on bin edges and tie
    oracle = np.round(rng.normal(0.0, 2.0, size=(9, 300)), 1)
    method[:, :5] = 250.0  # past the clip
    ours = binned_kl(method, oracle)
    theirs = [_reference_binned(method[:, j], oracle[:, j]) for j in range(method.shape[1])]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_normal_gives_the_closed_form_kl_of_the_fits_and_recovers_a_known_kl():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(7, 1))
    z = (z - z.mean()) / z.std(ddof=1)  # fits exactly mean 0, sd 1
    w = rng.normal(size=(11, 1))
    w = (w - w.mean()) / w.std(ddof=1)
    mu_m, s_m, mu_o, s_o = 1.5, 0.5, -0.5, 2.0
    exact = math.log(s_o / s_m) + (s_m**2 + (mu_m - mu_o) ** 2) / (2 * s_o**2) - 0.5
    assert normal_kl(mu_m + s_m * z, mu_o + s_o * w)[0] == pytest.approx(exact, rel=1e-12)
    # many models drawn from N(1, 2^2) against N(0, 1): KL = log(1/2) + (4 + 1) / 2 - 1/2
    known = math.log(0.5) + 2.5 - 0.5
    values = normal_kl(rng.normal(1.0, 2.0, size=(4000, 50)), rng.normal(0.0, 1.0, size=(4000, 50)))
    assert values.mean() == pytest.approx(known, rel=0.02)


def test_margins_are_the_correct_logit_minus_the_logsumexp_of_the_others():
    logits = np.array([[[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]]])
    got = margins(logits, np.array([0, 2]))
    assert got.shape == (1, 2)
    assert got[0, 0] == pytest.approx(2.0 - math.log(math.exp(0.0) + math.exp(1.0)))
    assert got[0, 1] == pytest.approx(3.0 - math.log(math.exp(0.0) + math.exp(3.0)))


def _median_bounds(values: np.ndarray, z: float = 3.29) -> tuple[float, float]:
    """A distribution-free band for the difference of two 2,000-draw medians: order statistics sqrt(2) x z
    standard errors from the middle (z = 3.29: 99.9%)."""
    ordered = np.sort(values)
    half = len(ordered) // 2
    k = math.ceil(z * math.sqrt(2) * math.sqrt(len(ordered)) / 2)
    return float(ordered[half - k]), float(ordered[half + k])


def _auc(shifted: np.ndarray, identical: np.ndarray) -> float:
    """The chance that a shifted pair scores above an identical one (ties count half)."""
    return float(stats.mannwhitneyu(shifted, identical).statistic / (len(shifted) * len(identical)))


@pytest.mark.parametrize("counts", list(ISSUE_TABLE))
def test_both_estimators_reproduce_the_issues_synthetic_table(counts):
    n, m = counts
    rng = np.random.default_rng(n * 1000 + m)
    same = rng.normal(size=(n, DRAWS)), rng.normal(size=(m, DRAWS))
    shift = rng.normal(size=(n, DRAWS)) + 1.0, rng.normal(size=(m, DRAWS))
    binned_median, binned_auc, normal_median, normal_auc = ISSUE_TABLE[counts]
    auc_se = math.sqrt(2 * (1 / 12) * 2 / DRAWS)  # two independent AUCs, each at most Hanley-McNeil's 1/12 variance
    for estimator, median, auc in (("binned", binned_median, binned_auc), ("normal", normal_median, normal_auc)):
        identical, shifted = per_sample(*same, estimator), per_sample(*shift, estimator)
        lo, hi = _median_bounds(identical)
        assert lo - 0.005 <= median <= hi + 0.005, (estimator, counts, np.median(identical))
        ours = _auc(shifted, identical)
        if estimator == "normal":
            assert abs(ours - auc) <= 3.29 * auc_se + 0.005, (counts, ours)
        else:
            assert 0 <= auc - ours <= BINNED_AUC_GAP, (counts, ours)


def test_auto_picks_binned_from_64_models_a_side():
    rng = np.random.default_rng(0)
    method, oracle = rng.normal(size=(64, 20)), rng.normal(size=(64, 20))
    np.testing.assert_array_equal(per_sample(method, oracle, "auto"), binned_kl(method, oracle))
    np.testing.assert_array_equal(per_sample(method[:63], oracle, "auto"), normal_kl(method[:63], oracle))
    with pytest.raises(UserError, match="expected one of binned, normal, auto"):
        per_sample(method, oracle, "kde")


def test_a_shifted_method_is_marked_above_its_floor_and_a_retrain_like_one_is_not():
    rng = np.random.default_rng(11)
    samples, members, seeds = 150, 16, 8
    centre = rng.normal(2.0, 3.0, size=samples)  # each sample its own margin distribution, sd 1 over models

    def models(k: int, shift: float = 0.0) -> np.ndarray:
        return centre + shift + rng.normal(size=(k, samples))

    oracle, retrain = models(members), models(seeds)
    grid = klom_grid({"shifted": models(seeds, 1.0), "retrain-like": models(seeds)}, oracle, retrain)
    row = grid.set_index("method")
    assert row.loc["shifted", "above_floor"] and not row.loc["retrain-like", "above_floor"]
    assert set(grid["estimator"]) == {"normal"} and set(grid["n_method"]) == {seeds}
    assert set(grid["n_oracle"]) == {members}
    for name in ("shifted", "retrain-like"):
        r = row.loc[name]
        assert r.klom_mean_lo < r.klom_mean_hi and r.floor_mean_lo < r.floor_mean_hi
        assert r.klom_p95 >= r.klom_mean and r.klom_p95_lo < r.klom_p95_hi
    table = markdown(grid)
    assert "| shifted |" in table and "▲" in table.split("| shifted |")[1].splitlines()[0]
    assert "| normal | 8 | 16 |" in table


def test_the_floor_is_refused_at_other_counts_or_with_a_members_seed():
    rng = np.random.default_rng(0)
    oracle = rng.normal(size=(8, 30))
    with pytest.raises(UserError, match="2 retrain runs for a method with 4 seeds"):
        klom_with_floor(rng.normal(size=(4, 30)), oracle, rng.normal(size=(2, 30)))
    with pytest.raises(UserError, match="retrain run 1 equals an oracle member"):
        klom_with_floor(rng.normal(size=(3, 30)), oracle, np.stack([rng.normal(size=30), oracle[5], oracle[0]]))
    with pytest.raises(UserError, match="at least 2 are needed"):
        per_sample(rng.normal(size=(1, 30)), oracle)
    with pytest.raises(UserError, match="30 samples, oracle margins 29"):
        per_sample(rng.normal(size=(3, 30)), oracle[:, :29])


def test_the_estimator_key_is_checked_and_stays_out_of_the_config_hash():
    from pathlib import Path

    import pandas as pd

    from clutune.core.config import load_config

    base = load_config("digits-random", {"oracle.ensemble": 8})  # the committed table's runs: 8 oracle members
    assert base.evaluation.klom.estimator == "auto"
    committed = Path(__file__).resolve().parents[1] / "bench/results/compare-runs/digits-random-b200/results.parquet"
    (before,) = pd.read_parquet(committed, columns=["config_hash"])["config_hash"].unique()
    binned = load_config("digits-random", {"oracle.ensemble": 8, "evaluation.klom.estimator": "binned"})
    assert binned.hash() == base.hash() == before
    with pytest.raises(UserError, match="'evaluation.klom.estimator': expected one of binned, normal, auto"):
        load_config("digits-random", {"evaluation.klom.estimator": "kde"})


def test_exact_retrains_land_inside_the_floor_and_finetune_above_it_on_digits():
    """Real digits models by the oracle recipe (shortened to 15 epochs): on digits-random's forget split, three
    more exact retrains are not marked against the floor of three retrains, while three models that never unlearned
    (owned ids plus the forget set) are."""
    import torch

    from clutune.core.config import load_config
    from clutune.core.experiment import prepare
    from clutune.core.oracle import train_oracle

    torch.set_num_threads(1)
    prep = prepare(load_config("digits-random", {"oracle.epochs": 15}))
    owned = prep.scenario.owned(-1).nonzero().flatten()
    forget = prep.scenario.unlearned(-1).nonzero().flatten()
    labels = prep.dataset.y_train[forget].numpy()

    def pool(ids, seeds):
        logits = [train_oracle(prep.dataset, ids, prep.recipe, s)[1].logits_train[forget].numpy() for s in seeds]
        return margins(np.stack(logits), labels)

    members = pool(owned, range(8))
    retrain_floor, retrain_more = pool(owned, (100, 101, 102)), pool(owned, (103, 104, 105))
    finetune = pool(torch.cat([owned, forget]), (100, 101, 102))
    grid = klom_grid({"retrain": retrain_more, "finetune": finetune}, members, retrain_floor)
    row = grid.set_index("method")
    assert not row.loc["retrain", "above_floor"] and row.loc["finetune", "above_floor"]
    assert row.loc["finetune", "klom_mean"] > 3 * row.loc["finetune", "floor_mean"]
    assert set(grid["estimator"]) == {"normal"}


@pytest.mark.parametrize(("estimator", "n", "m"), [("normal", 5, 8), ("binned", 8, 16)])
def test_the_jackknife_interval_covers_the_expected_value_and_is_not_narrower_than_the_spread(estimator, n, m):
    """Over 100 synthetic replications (a 0.5-sd shift, 200 samples, each with its own centre): the intervals cover
    the mean of the replications' values at least 95% of the time, and their implied standard error is no smaller
    than the values' spread across replications, nor more than 2.5 times it."""
    rng = np.random.default_rng(5)
    centre = rng.normal(0.0, 3.0, size=200)
    runs = [
        summarise(centre + 0.5 + rng.normal(size=(n, 200)), centre + rng.normal(size=(m, 200)), estimator)
        for _ in range(100)
    ]
    values = np.array([r.mean for r in runs])
    expected = values.mean()
    covered = np.mean([r.mean_lo <= expected <= r.mean_hi for r in runs])
    implied = np.mean([(r.mean_hi - r.mean_lo) / (2 * 1.96) for r in runs])
    assert covered >= 0.95
    assert values.std(ddof=1) <= implied <= 2.5 * values.std(ddof=1)
    assert {r.estimator for r in runs} == {estimator}


def test_two_seeds_give_a_value_without_an_interval_and_no_mark():
    rng = np.random.default_rng(2)
    oracle = rng.normal(size=(8, 30))
    grid = klom_grid({"two": rng.normal(size=(2, 30)) + 3.0}, oracle, rng.normal(size=(2, 30)))
    assert np.isnan(grid.loc[0, "klom_mean_lo"]) and np.isnan(grid.loc[0, "floor_mean_hi"])
    assert not grid.loc[0, "above_floor"] and grid.loc[0, "klom_mean"] > 1.0
    assert f"| two | {grid.loc[0, 'klom_mean']:.3g} | " in markdown(grid)
