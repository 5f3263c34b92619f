"""Per-example U-LiRA (Hayes et al., 2024): how exposed each forgotten sample still is, one sample at a time.

A population attack asks one question of all samples at once and averages away the few that stay exposed.
U-LiRA asks it per sample: shadow models of the same recipe, each trained on a random half of the data, show how
that sample's logit-scaled confidence, log p − log(1 − p) of its true class, is distributed when it was trained
on ("in") and when it was not ("out"). A Gaussian fitted to each side turns the attacked model's confidence into a
likelihood ratio: high when the model still behaves as if it had trained on the sample.

The attacked samples are the forget set (members until the unlearn) against held-out non-members (the test
set), which the shadows also see in and out, so both groups are scored by the same rule. Under an exact retrain
the forget set is as "out" as the test set and the attack's AUC is 0.5 up to sampling error; a method that keeps
what it was asked to forget scores above it. The same attack on the retained set asks whether unlearning left
the rest more exposed than a retrain leaves it.

NumPy only: the shadows' training lives in :mod:`clutune.core.shadows`.
"""

from __future__ import annotations

import math

import numpy as np

from clutune.core.margins import correct_class_margin

FPR_POINTS = (0.01, 0.001)  # the false-positive rates the attack's TPR is reported at
# A side's spread is floored at this share of its median spread over examples: with a handful of shadows one
# example can get a near-zero spread, and its ratio would then outrank every other example on its own.
SPREAD_FLOOR = 0.1


def confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p − log(1 − p) of the true class per row of ``logits`` (..., n, C): LiRA's logit-scaled confidence,
    which is KLoM's correct-class margin (the true class's logit minus the logsumexp of the others), float64."""
    return correct_class_margin(logits, labels)


def membership(n_samples: int, shadows: int, seed: int) -> np.ndarray:
    """(shadows, n) booleans: which shadow trains on which sample. Every sample is in for exactly half of the
    shadows, so each side of every example's fit gets the same number of models."""
    if shadows < 2 or shadows % 2:
        raise ValueError(f"U-LiRA needs an even number of shadows, at least 2; got {shadows}")
    rng = np.random.default_rng(seed)
    order = rng.random((shadows, n_samples)).argsort(axis=0)
    return order < shadows // 2


def _fit(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the mean and spread of the rows ``mask`` selects, the spread floored (:data:`SPREAD_FLOOR`)."""
    count = mask.sum(axis=0)
    mean = np.where(mask, values, 0).sum(axis=0) / count
    var = np.where(mask, (values - mean) ** 2, 0).sum(axis=0) / np.maximum(count - 1, 1)
    sd = np.sqrt(var)
    floor = SPREAD_FLOOR * np.median(sd) if np.median(sd) > 0 else 1e-6
    return mean, np.maximum(sd, floor)


def _log_normal(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)


def likelihood_ratios(target: np.ndarray, shadow: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """log N(c; in) − log N(c; out) per example: ``target`` (n,) the attacked model's confidences, ``shadow``
    (S, n) the shadows' and ``inside`` (S, n) which shadow trained on which example."""
    mean_in, sd_in = _fit(shadow, inside)
    mean_out, sd_out = _fit(shadow, ~inside)
    return _log_normal(target, mean_in, sd_in) - _log_normal(target, mean_out, sd_out)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The chance that a positive outscores a negative, ties counted half (Mann-Whitney)."""
    if not len(positive) or not len(negative):
        return math.nan
    ranks = _ranks(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged."""
    order = values.argsort(kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values))
    start = 0
    for end in np.flatnonzero(np.diff(sorted_values) != 0).tolist() + [len(values) - 1]:
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def auc_interval(value: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    """The 95% interval of an AUC from its standard error (Hanley and McNeil, 1982): what sampling error alone
    allows, so an exact retrain's interval covers 0.5."""
    if math.isnan(value) or not n_pos or not n_neg:
        return math.nan, math.nan
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    var = (value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)) / (n_pos * n_neg)
    half = 1.96 * math.sqrt(max(var, 0.0))
    return max(0.0, value - half), min(1.0, value + half)


def roc(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of every threshold on the scores, from the strictest down, starting at (0, 0)."""
    thresholds = np.unique(np.concatenate([positive, negative]))[::-1]
    pos, neg = np.sort(positive), np.sort(negative)
    tpr = (len(pos) - np.searchsorted(pos, thresholds, side="left")) / max(len(pos), 1)
    fpr = (len(neg) - np.searchsorted(neg, thresholds, side="left")) / max(len(neg), 1)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def tpr_at(positive: np.ndarray, negative: np.ndarray, fpr: float) -> float:
    """The largest TPR among the thresholds whose FPR is at most ``fpr``. With n negatives, an FPR under 1/n
    means no false positive at all: the figure is then as coarse as the test set is small."""
    if not len(positive) or not len(negative):
        return math.nan
    fprs, tprs = roc(positive, negative)
    return float(tprs[fprs <= fpr].max())


STATISTICS = ("auc", "auc_lo", "auc_hi", "tpr1", "tpr01")
# The row columns: the attack on the forget set, on the retained set, and the oracle's AUCs under the same attack
COLUMNS = (
    *(f"ulira_{s}" for s in STATISTICS),
    *(f"ulira_{s}_retain" for s in STATISTICS),
    "oracle_ulira_auc",
    "oracle_ulira_auc_retain",
)


def attack_columns(positive: np.ndarray, negative: np.ndarray, suffix: str = "") -> dict[str, float]:
    """``ulira_auc<suffix>`` with its interval (``_auc_lo``, ``_auc_hi``) and the TPR at 1% and 0.1% FPR
    (``_tpr1``, ``_tpr01``)."""
    value = auc(positive, negative)
    lo, hi = auc_interval(value, len(positive), len(negative))
    tpr1, tpr01 = (tpr_at(positive, negative, f) for f in FPR_POINTS)
    values = dict(zip(STATISTICS, (value, lo, hi, tpr1, tpr01), strict=True))
    return {f"ulira_{name}{suffix}": v for name, v in values.items()}


def no_columns() -> dict[str, float]:
    """A request that is not attacked, in a run that attacks some: every column NaN."""
    return dict.fromkeys(COLUMNS, math.nan)


__all__ = [
    "COLUMNS",
    "attack_columns",
    "no_columns",
    "auc",
    "auc_interval",
    "confidence",
    "likelihood_ratios",
    "membership",
    "roc",
    "tpr_at",
]
