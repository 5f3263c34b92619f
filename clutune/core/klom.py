"""KLoM: how far a method's models are from retraining, as distributions over models rather than one draw.

For each sample, the correct-class margin (its logit minus the logsumexp of the other logits) varies across the
models an algorithm produces with different seeds. KLoM (Georgiev et al., ICLR 2025; EasyDUB) is the KL divergence
between a sample's margin distribution over the method's seeds and over oracle members (exact retrains), summarised
over a split by the mean and the 95th percentile of the per-sample values.

Two estimators of the per-sample KL, chosen by ``evaluation.klom.estimator``:

- ``binned``: EasyDUB's definition exactly (``unlearning_bench/eval.py``), so a value can be set beside published
  ones. It is almost all bias below about 64 models per side: with 5 seeds against 8 members, two identical
  distributions read about 7.6.
- ``normal``: each side's margins per sample fitted by a normal (mean, n - 1 standard deviation) and the
  closed-form KL(method || oracle) of the fits. LiRA and U-LiRA model this same logit-scaled confidence as normal
  across models, and the fit's bias at small counts is a small fraction of the binned one.
- ``auto``: ``binned`` when both sides have at least 64 models, ``normal`` otherwise.

A value estimated from a few models only means something beside its reference at the same counts, so every KLoM
comes with ``klom_floor``: the same statistic for ``retrain`` runs (seeds other than the members') against the same
members. The samples of a split are the fixed set a request scored; the uncertainty that matters is which few
models were trained. So each summary's 95% interval is the value ± 1.96 jackknife standard errors over models:
delete one of the method's seeds at a time, then one of the members, and add the two sides' jackknife variances
(an interval needs at least 3 models a side; its lower end is cut at 0). A bootstrap over models does worse here:
a resample repeats models, a repeat shrinks a side's spread, and at 8 models the resampled KL ran so far above the
point value that the point fell below its own percentile interval (bench/results/klom_power.md). The jackknife
errs the other way, conservatively: on synthetic normal margins its standard error is about 1.7-1.9 times the
spread of the value across replications, so an interval covers the expected value nearly always and a mark is
never given lightly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from clutune.core.config import KlomConfig
from clutune.errors import UserError

ESTIMATORS = KlomConfig.ESTIMATORS
AUTO_BINNED_MIN = 64  # models per side from which ``auto`` picks ``binned``
CLIP = 100.0  # margins are clipped to [-CLIP, CLIP] (EasyDUB's clip_min / clip_max)
BINS = 20
EPS = 1e-5  # EasyDUB's floor of an oracle bin's probability where the method's is positive
# A per-sample standard deviation below this is raised to it: float16 margins near 1-10 are stored to about 1e-3,
# so a smaller spread is storage rounding, and identical models then give a finite value instead of a division by 0.
SD_FLOOR = 1e-3
PERCENTILE = 95.0
CONFIDENCE = 0.95
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
MIN_MODELS = 2  # per side: one model has no spread to fit or to bin


def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Correct-class margin of every sample: its logit minus the logsumexp of the other logits (EasyDUB's
    ``get_margin``). ``logits`` is [..., samples, classes]; the result drops the class axis."""
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    correct = np.take_along_axis(z, np.broadcast_to(labels[..., None], z.shape[:-1] + (1,)), axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, np.broadcast_to(labels[..., None], z.shape[:-1] + (1,)), -np.inf, axis=-1)
    return correct - logsumexp(others, axis=-1)


def resolve_estimator(estimator: str, n_method: int, n_oracle: int) -> str:
    """The estimator ``auto`` stands for at these counts; ``binned`` or ``normal`` as given."""
    if estimator not in ESTIMATORS:
        raise UserError(f"KLoM estimator {estimator!r}: expected one of {', '.join(ESTIMATORS)}")
    if estimator != "auto":
        return estimator
    return "binned" if min(n_method, n_oracle) >= AUTO_BINNED_MIN else "normal"


def binned_kl(method: np.ndarray, oracle: np.ndarray) -> np.ndarray:
    """EasyDUB's ``compute_binned_KL_div`` of every sample (column) at once: [models x samples] each side.

    Margins are clipped, 20 equal-width bins span the joint minimum to maximum (a zero range becomes width 1), and
    a value is counted in bin i when edge[i-1] <= value < edge[i], as ``np.digitize`` counts; so a value equal to
    the joint maximum falls in no bin. Where the method's probability is positive the oracle's is floored at 1e-5,
    and the oracle's probabilities are renormalised, as scipy's ``entropy(p, q)`` does. A side with no counted
    value (all its models at the joint maximum) gives NaN, as the reference does.
    """
    p_arr = np.clip(np.asarray(method, dtype=np.float64), -CLIP, CLIP)
    q_arr = np.clip(np.asarray(oracle, dtype=np.float64), -CLIP, CLIP)
    start = np.minimum(p_arr.min(axis=0), q_arr.min(axis=0))
    end = np.maximum(p_arr.max(axis=0), q_arr.max(axis=0))
    end = np.where(start >= end, start + 1.0, end)
    edges = np.linspace(start, end, BINS + 1, axis=-1)  # [samples x 21]
    p = _bin_probabilities(p_arr, edges)
    q = _bin_probabilities(q_arr, edges)
    q = np.where(p > 0, np.maximum(q, EPS), q)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p.sum(axis=1, keepdims=True)
        q = q / q.sum(axis=1, keepdims=True)
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return np.where(np.isnan(p).any(axis=1), np.nan, terms.sum(axis=1))


def _bin_probabilities(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[samples x BINS] share of each sample's models in each bin; a value at or past the last edge is not
    counted (``np.digitize`` index 21), so the shares sum to less than 1 when a model sits at the joint maximum."""
    # np.digitize's index, per sample and model: the number of edges at or below the value (summed over a leading
    # axis, which numpy adds far faster than a short trailing one)
    index = (values.T[None] >= edges.T[:, :, None]).sum(axis=0, dtype=np.int64)
    width = BINS + 2  # indices 0 (below the first edge: never, the minimum is an edge) .. 21 (at the maximum)
    rows = np.arange(len(index))[:, None] * width
    counts = np.bincount((rows + index).ravel(), minlength=len(index) * width).reshape(-1, width)
    counts = counts[:, 1 : BINS + 1].astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def normal_kl(method: np.ndarray, oracle: np.ndarray) -> np.ndarray:
    """Closed-form KL(N_method || N_oracle) of every sample's normal fits (mean, n - 1 sd; margins clipped as
    the binned estimator clips them): log(s_o / s_m) + (s_m^2 + (mu_m - mu_o)^2) / (2 s_o^2) - 1/2."""
    p_arr = np.clip(np.asarray(method, dtype=np.float64), -CLIP, CLIP)
    q_arr = np.clip(np.asarray(oracle, dtype=np.float64), -CLIP, CLIP)
    mu_m, mu_o = p_arr.mean(axis=0), q_arr.mean(axis=0)
    s_m = np.maximum(p_arr.std(axis=0, ddof=1), SD_FLOOR)
    s_o = np.maximum(q_arr.std(axis=0, ddof=1), SD_FLOOR)
    return np.log(s_o / s_m) + (s_m**2 + (mu_m - mu_o) ** 2) / (2 * s_o**2) - 0.5


PER_SAMPLE = {"binned": binned_kl, "normal": normal_kl}


def per_sample(method: np.ndarray, oracle: np.ndarray, estimator: str = "auto") -> np.ndarray:
    """KLoM of every sample (column): ``method`` [seeds x samples] against ``oracle`` [members x samples]."""
    method, oracle = _checked(method, "method"), _checked(oracle, "oracle")
    if method.shape[1] != oracle.shape[1]:
        raise UserError(f"KLoM: method margins cover {method.shape[1]} samples, oracle margins {oracle.shape[1]}")
    return PER_SAMPLE[resolve_estimator(estimator, len(method), len(oracle))](method, oracle)


def _checked(margins_: np.ndarray, side: str) -> np.ndarray:
    a = np.asarray(margins_, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] == 0:
        raise UserError(f"KLoM: {side} margins must be [models x samples] with at least one sample, got {a.shape}")
    if len(a) < MIN_MODELS:
        raise UserError(f"KLoM: {side} margins come from {len(a)} model(s); at least {MIN_MODELS} are needed")
    if not np.isfinite(a).all():
        raise UserError(f"KLoM: {side} margins hold a NaN or infinite value")
    return a


@dataclass(frozen=True)
class Summary:
    """A split's KLoM: the mean and 95th percentile of its per-sample values, each with a 95% interval."""

    mean: float
    mean_lo: float
    mean_hi: float
    p95: float
    p95_lo: float
    p95_hi: float
    estimator: str
    n_method: int
    n_oracle: int


def _stats(values: np.ndarray) -> np.ndarray:
    """(mean, p95) over the last axis, samples with a NaN value left out."""
    return np.stack([np.nanmean(values, axis=-1), np.nanpercentile(values, PERCENTILE, axis=-1)], axis=-1)


def summarise(method: np.ndarray, oracle: np.ndarray, estimator: str = "auto") -> Summary:
    """The split's KLoM with 95% jackknife intervals over models (see the module's docstring)."""
    method, oracle = _checked(method, "method"), _checked(oracle, "oracle")
    used = resolve_estimator(estimator, len(method), len(oracle))
    kl = PER_SAMPLE[used]
    point = _stats(kl(method, oracle))
    variance = _jackknife_variance(lambda i: _stats(kl(np.delete(method, i, axis=0), oracle)), len(method))
    variance += _jackknife_variance(lambda i: _stats(kl(method, np.delete(oracle, i, axis=0))), len(oracle))
    half = Z95 * np.sqrt(variance)
    lo, hi = np.maximum(point - half, 0.0), point + half  # a KL is never negative
    return Summary(
        float(point[0]),
        float(lo[0]),
        float(hi[0]),
        float(point[1]),
        float(lo[1]),
        float(hi[1]),
        used,
        len(method),
        len(oracle),
    )


def _jackknife_variance(without: Callable[[int], np.ndarray], k: int) -> np.ndarray:
    """(k - 1) / k times the sum of squared deviations of the k leave-one-out values ``without(i)`` from their
    mean; NaN when a side has fewer than 3 models (a leave-one-out set of one model has no spread)."""
    if k < 3:
        return np.full(2, np.nan)
    values = np.stack([without(i) for i in range(k)])
    return (k - 1) / k * ((values - values.mean(axis=0)) ** 2).sum(axis=0)


def klom_with_floor(
    method: np.ndarray,
    oracle: np.ndarray,
    retrain: np.ndarray,
    estimator: str = "auto",
) -> tuple[Summary, Summary]:
    """The method's KLoM and ``klom_floor``: the first as many ``retrain`` runs as the method has seeds against the
    same members, with the same estimator. Refuses (one line) fewer retrain runs than method seeds, and a retrain
    run identical to a member (a retrain with a member's seed measures nothing)."""
    method, oracle, retrain = _checked(method, "method"), _checked(oracle, "oracle"), _checked(retrain, "retrain")
    if len(retrain) < len(method):
        raise UserError(
            f"KLoM floor: {len(retrain)} retrain runs for a method with {len(method)} seeds; the floor needs as many "
            "retrain runs as the method has seeds, to be at the same counts"
        )
    for i, row in enumerate(retrain[: len(method)]):
        if (row == oracle).all(axis=1).any():
            raise UserError(f"KLoM floor: retrain run {i} equals an oracle member; run retrain with other seeds")
    used = resolve_estimator(estimator, len(method), len(oracle))
    return (
        summarise(method, oracle, used),
        summarise(retrain[: len(method)], oracle, used),
    )


def klom_grid(
    methods: Mapping[str, np.ndarray],
    oracle: np.ndarray,
    retrain: np.ndarray,
    estimator: str = "auto",
) -> pd.DataFrame:
    """One row per method of a scored request's split: its KLoM, its floor and the mark.

    ``methods`` maps a method's name to its margins [seeds x samples]; ``oracle`` is [members x samples] and
    ``retrain`` [retrain seeds x samples], all over the same samples in the same order. ``above_floor`` is True
    when the interval of the method's mean KLoM lies wholly above the floor's: the method is distinguishable from
    exact retraining at these counts.
    """
    rows = []
    for name, values in methods.items():
        klom, floor = klom_with_floor(values, oracle, retrain, estimator)
        rows.append(
            {
                "method": name,
                **{f"klom_{k}": getattr(klom, k) for k in ("mean", "mean_lo", "mean_hi", "p95", "p95_lo", "p95_hi")},
                **{f"floor_{k}": getattr(floor, k) for k in ("mean", "mean_lo", "mean_hi", "p95", "p95_lo", "p95_hi")},
                "above_floor": bool(klom.mean_lo > floor.mean_hi),
                "estimator": klom.estimator,
                "n_method": klom.n_method,
                "n_oracle": klom.n_oracle,
            }
        )
    return pd.DataFrame(rows)


def markdown(grid: pd.DataFrame) -> str:
    """The grid as the table comparison.md and the study summary show: KLoM beside its floor, always. A grid with
    a ``split`` column (several splits in one table) shows it first."""
    by_split = "split" in grid.columns
    lines = [
        "KLoM: per-sample KL between the margin distribution over the method's seeds and over the oracle members, "
        "the mean over the split's samples [95% jackknife interval over models], and the 95th percentile. "
        "klom_floor: the same for retrain runs (seeds other than the members') at the same counts. "
        "▲: the method's interval lies wholly above the floor's; ≈: it does not clear the floor's (the method is "
        "not distinguishable from retraining at these counts); ▼: wholly below it; no mark: no interval.",
        "",
        ("| split " if by_split else "")
        + "| method | klom | klom p95 | klom_floor | floor p95 | mark | estimator | n_method | n_oracle |",
        ("|---" if by_split else "") + "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in grid.itertuples():
        lines.append(
            (f"| {r.split} " if by_split else "")
            + f"| {r.method} | {_cell(r.klom_mean, r.klom_mean_lo, r.klom_mean_hi)} "
            f"| {_cell(r.klom_p95, r.klom_p95_lo, r.klom_p95_hi)} "
            f"| {_cell(r.floor_mean, r.floor_mean_lo, r.floor_mean_hi)} "
            f"| {_cell(r.floor_p95, r.floor_p95_lo, r.floor_p95_hi)} "
            f"| {_mark(r)} | {r.estimator} | {r.n_method} | {r.n_oracle} |"
        )
    return "\n".join(lines) + "\n"


def _mark(r: Any) -> str:
    """Where the method's interval lies against the floor's (see :func:`markdown`'s caption)."""
    bounds = (r.klom_mean_lo, r.klom_mean_hi, r.floor_mean_lo, r.floor_mean_hi)
    if not np.isfinite(bounds).all():
        return ""
    if r.above_floor:
        return "▲"
    return "▼" if r.klom_mean_hi < r.floor_mean_lo else "≈"


def _cell(value: float, lo: float, hi: float) -> str:
    """The value and its interval; the value alone where a side had too few models for an interval."""
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else f"{value:.3g}"


__all__ = [
    "ESTIMATORS",
    "Summary",
    "binned_kl",
    "klom_grid",
    "klom_with_floor",
    "margins",
    "markdown",
    "normal_kl",
    "per_sample",
    "resolve_estimator",
    "summarise",
]
