"""The NeurIPS 2023 unlearning competition's forgetting score, from the definitions (docs/attacks.md).

Per forget example the competition asks how well the best threshold attack tells one set of models (the
method's runs) from another (exact retrains) by that example's logit-scaled confidence, log p − log(1 − p) of
the true class, which is the correct-class margin clutune already keeps (:mod:`clutune.core.margins`). The
attack's power becomes an ε of differential privacy at δ = 1e-5; ε goes into buckets worth 1, 1/2, 1/4, ...
points, and F is the mean over the forget set.

The rates come from counts over sorted confidences (``searchsorted``), not from a models × thresholds table:
the interval rule alone has 160,000 threshold pairs per example, and a forget set of a few hundred examples
would otherwise hold gigabytes. The two sides may hold different numbers of models (a method's seeds against
the oracle members); the bucket ceiling follows the method's side, as the reference's N does.

The estimate is coarse at the counts a grid affords: the maximum over thousands of thresholds is biased upward
when each side holds few models, so even two identical distributions score F far below 1 (two identical
normals at 16 models a side: median ε ≈ 1.6, F ≈ 0.16). That is why a score is read beside ``f_ceiling``, the
same score of exact retrains at the same counts.
"""

from __future__ import annotations

import math

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100  # thresholds per unit of confidence, in both rule families
INTERVAL_BUFFER = 2.0  # how far past the peakier side's range the interval rule's thresholds reach
PEAKY_RATIO = 0.01  # a side whose range is under 1% of the other's is a degenerate, fully exposed example
BUCKET_WIDTH = 0.5


def bucket_limit(n_models: int) -> float:
    """Where the buckets stop for ``n_models`` models a side: ceil(log(N − 1)); every ε from there on scores 0.
    The reference's back-of-the-envelope bound on the ε that N samples can resolve."""
    if n_models < 2:
        raise ValueError(f"the ε score needs at least 2 models a side, got {n_models}")
    return float(math.ceil(math.log(n_models - 1)))


def _epsilon_of_rates(fpr: np.ndarray, fnr: np.ndarray, tpr: np.ndarray, tnr: np.ndarray) -> float:
    """The largest ε over thresholds, from each threshold's rates (the reference's rules, in order):

    - FPR = FNR = 0 with TPR = TNR = 1: perfect separation, ε = ∞ (capped by the caller);
    - exactly one of FPR, FNR is 0: discarded, taken as a sign of too few samples rather than of certainty;
    - otherwise max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR), floored at 0; a term whose log is
      undefined (1 − δ − rate ≤ 0) drops out, and a threshold where both do is discarded.
    """
    perfect = (fpr + fnr == 0) & (tpr + tnr == 2)
    if perfect.any():
        return math.inf
    keep = (fpr > 0) & (fnr > 0)
    fpr, fnr = fpr[keep], fnr[keep]
    if not len(fpr):
        return 0.0  # no threshold tells the sides apart by any rule: nothing to bound
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1 - DELTA - fpr) - np.log(fnr)
        b = np.log(1 - DELTA - fnr) - np.log(fpr)
    both = np.stack([a, b])
    defined = ~np.isnan(both).all(axis=0)
    if not defined.any():
        return 0.0
    return float(max(0.0, np.nanmax(both[:, defined])))


def _single_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """One threshold t over the joint range, predicting "positive" at or above it."""
    both = np.concatenate([pos, neg])
    lo, hi = both.min(), both.max()
    count = int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT))
    t = np.linspace(lo, hi, count)
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    tpr = (len(pos) - np.searchsorted(pos_s, t, side="left")) / len(pos)  # share >= t
    fpr = (len(neg) - np.searchsorted(neg_s, t, side="left")) / len(neg)
    return fpr, 1 - tpr, tpr, 1 - fpr


def _interval_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """An interval [l, r] predicting the peakier side (the narrower range) inside it: r runs over the peakier
    side's range widened by the buffer, and l over a window of twice the buffer around r minus that range."""
    pos_range, neg_range = np.ptp(pos), np.ptp(neg)
    peaky, wide = (neg, pos) if pos_range >= neg_range else (pos, neg)
    width = min(pos_range, neg_range)
    lo, hi = peaky.min() + width - INTERVAL_BUFFER, peaky.max() + INTERVAL_BUFFER
    right = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    n_left = int(math.ceil(2 * INTERVAL_BUFFER * THRESHOLDS_PER_UNIT))
    offsets = np.linspace(-width - INTERVAL_BUFFER, -width + INTERVAL_BUFFER, n_left)
    left = (right[:, None] + offsets[None, :]).ravel()
    right = np.repeat(right, n_left)

    def inside(values: np.ndarray) -> np.ndarray:
        s = np.sort(values)
        return (np.searchsorted(s, right, side="right") - np.searchsorted(s, left, side="left")).clip(0) / len(s)

    tpr, fpr = inside(peaky), inside(wide)
    return fpr, 1 - tpr, tpr, 1 - fpr


def example_epsilon(unlearned: np.ndarray, retrained: np.ndarray) -> float:
    """ε of one example from its confidences under each side's models (1-D arrays), capped at 50.

    The positive side is the one with the larger median; a side whose range is under 1% of the other's is the
    degenerate peaky case and gets the cap outright (the threshold search may miss how exposed it is).
    """
    unlearned, retrained = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
    pos, neg = (retrained, unlearned) if np.median(retrained) > np.median(unlearned) else (unlearned, retrained)
    ranges = sorted((np.ptp(pos), np.ptp(neg)))
    if ranges[1] > 0 and ranges[0] / ranges[1] < PEAKY_RATIO:
        return EPSILON_CAP
    eps = max(_epsilon_of_rates(*_interval_rates(pos, neg)), _epsilon_of_rates(*_single_rates(pos, neg)))
    return min(eps, EPSILON_CAP)


def example_epsilons(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """ε per example: ``unlearned`` (models, examples) against ``retrained`` (models', examples)."""
    unlearned, retrained = np.atleast_2d(unlearned), np.atleast_2d(retrained)
    if unlearned.shape[1] != retrained.shape[1]:
        raise ValueError(f"the sides score different examples: {unlearned.shape[1]} and {retrained.shape[1]}")
    return np.array([example_epsilon(unlearned[:, i], retrained[:, i]) for i in range(unlearned.shape[1])])


def points(epsilons: np.ndarray, n_models: int) -> np.ndarray:
    """Each example's points: 1 for ε in [0, 0.5), 1/2 for [0.5, 1), ... up to the bucket limit, then 0."""
    eps = np.asarray(epsilons, dtype=np.float64)
    n_buckets = int(bucket_limit(n_models) / BUCKET_WIDTH)
    index = np.floor(eps / BUCKET_WIDTH)
    return np.where(index < n_buckets, 0.5 ** np.clip(index, 0, None), 0.0)


def forget_score(epsilons: np.ndarray, n_models: int) -> float:
    """F: the mean points over the forget set, for ``n_models`` models on the scored (method's) side."""
    return float(points(epsilons, n_models).mean()) if len(epsilons) else math.nan


def final_score(f: float, retain: float, retain_retrain: float, test: float, test_retrain: float) -> float:
    """F · (RA_U / RA_R) · (TA_U / TA_R): forgetting, scaled down by any accuracy the method lost to the retrain."""
    if retain_retrain <= 0 or test_retrain <= 0:
        return math.nan
    return f * (retain / retain_retrain) * (test / test_retrain)


__all__ = [
    "DELTA",
    "EPSILON_CAP",
    "bucket_limit",
    "example_epsilon",
    "example_epsilons",
    "final_score",
    "forget_score",
    "points",
]
