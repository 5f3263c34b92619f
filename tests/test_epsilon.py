"""The competition's ε score (clutune.core.epsilon): the issue's figures on constructed normals, and each rule of
the definitions on cases worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clutune.core.epsilon import (
    DELTA,
    EPSILON_CAP,
    bucket_limit,
    example_epsilon,
    example_epsilons,
    forget_score,
    points,
)


@pytest.mark.parametrize(
    ("models", "shift", "median", "f"),
    [(16, 0.0, 1.61, 0.16), (64, 0.0, 1.50, 0.19), (64, 3.0, 4.0, 0.005)],
)
def test_constructed_normals_reproduce_the_reference_figures(models, shift, median, f):
    """40 examples drawn as the issue's figures were (metric.py's own functions on CPU); ε takes values log(k)
    at these counts, so a median moves by one step (about 0.2) between draws, and F by about 0.02."""
    rng = np.random.default_rng(7)
    eps = example_epsilons(rng.normal(0, 1, (models, 40)), rng.normal(shift, 1, (models, 40)))
    assert abs(np.median(eps) - median) < 0.25
    assert abs(forget_score(eps, models) - f) < (0.04 if shift == 0 else 0.005)


def test_one_threshold():
    """Retrains [0, 1, 2, 3] above unlearned [-2.5, -1.5, -0.5, 0.5]: a threshold in (0, 0.5] gets 3 of 4 right
    on each side (FPR = FNR = 1/4); thresholds with one rate 0 are discarded, so ε = log((1 − δ − 1/4) / (1/4))."""
    eps = example_epsilon(np.array([-2.5, -1.5, -0.5, 0.5]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert eps == pytest.approx(math.log((0.75 - DELTA) / 0.25), abs=1e-9)


def test_an_interval():
    """The peakier set [0, 0.1, 0.2, 0.3] sits inside the wider [-3, -2, 0.15, 3]: an interval around three of
    its values holds one of the other's (TPR 3/4, FPR 1/4), ε = log(3 − 4δ); the best single threshold only
    reaches log(2 − 4δ) (TPR 1/2, FPR 1/4)."""
    eps = example_epsilon(np.array([0.0, 0.1, 0.2, 0.3]), np.array([-3.0, -2.0, 0.15, 3.0]))
    assert eps == pytest.approx(math.log((0.75 - DELTA) / 0.25), abs=1e-9)
    assert eps > math.log((0.5 - DELTA) / 0.25) + 0.3


def test_degenerate_peaky_case_scores_the_cap():
    """A side whose range is under 1% of the other's: the cap, whatever the thresholds say."""
    assert example_epsilon(np.array([1.0, 1.0, 1.0, 1.001]), np.array([0.0, 1.0, 2.0, 3.0])) == EPSILON_CAP


def test_perfect_separation_scores_the_cap():
    assert example_epsilon(np.array([5.0, 6.0, 7.0]), np.array([0.0, 1.0, 2.0])) == EPSILON_CAP


def test_buckets_halve_and_stop_at_ceil_log_n_minus_1():
    """N = 16: ceil(log 15) = 3, six buckets of 0.5 worth 1, 1/2, ..., 1/32; ε ≥ 3 scores nothing."""
    assert bucket_limit(16) == 3 and bucket_limit(64) == 5
    eps = np.array([0.0, 0.49, 0.5, 1.2, 2.9, 3.0, 50.0])
    assert points(eps, 16).tolist() == [1, 1, 0.5, 0.25, 1 / 32, 0, 0]
    assert forget_score(eps, 16) == pytest.approx((2.5 + 0.25 + 1 / 32) / 7)


def test_no_unlearning_scores_near_zero_beside_its_ceiling():
    """A method that unlearned nothing: its outputs on the forget set are the original model's, which trained on
    it (confidence 4 higher per seed than a retrain's), so every forget sample tells its runs from the retrains
    and scores next to nothing, while exact retrains at the same counts score their ceiling."""
    rng = np.random.default_rng(7)
    models, samples = 16, 40
    hardness = rng.normal(0, 1, samples)  # per sample, shared by every model: some samples are harder than others
    members, floor = (hardness + rng.normal(0, 1, (models, samples)) for _ in range(2))
    original = hardness + 4.0 + rng.normal(0, 1, (models, samples))
    f = forget_score(example_epsilons(original, members), models)
    ceiling = forget_score(example_epsilons(floor, members), models)
    assert ceiling > 0.1  # the figure at 16 models a side (0.16 on two identical normals)
    assert f < 0.02 and f / ceiling < 0.1
