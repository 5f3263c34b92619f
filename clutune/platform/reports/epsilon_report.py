"""The competition's ε score of a finished (method, seed) grid, beside its ceiling (``evaluation.epsilon``).

Per scored unlearn request, each forget sample's ε tells a method's runs (its seeds) from the oracle members by
the sample's logit-scaled confidence, which is the correct-class margin every run already writes
(:mod:`clutune.core.margins`); :mod:`clutune.core.epsilon` has the definitions. At the counts a grid affords the
score is coarse and biased down, so the same score of KLoM's floor models (exact retrains with seeds other than
the members', as many as the method's seeds) against the same members is its ceiling, ``f_ceiling``: an exact
retrain scores ``F ÷ f_ceiling`` = 1 up to sampling error, and the interval of that ratio comes from resampling
the forget samples.

Written beside results.parquet: ``epsilon.csv`` (per request and method), ``epsilon_summary.csv`` (the forget
samples of all scored unlearn requests pooled) and ``epsilon_examples.csv`` (every forget sample's ε, the
method's and the ceiling's, for the report's histogram).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import ray

from clutune.core.epsilon import bucket_limit, example_epsilons, final_score, points
from clutune.core.margins import floor_margins_path, member_margins_path, read_margins, run_margins_path
from clutune.core.oracle import OracleOutputs
from clutune.core.scenarios import Scenario
from clutune.data import Dataset

CEILING = "retrain ceiling"  # the side of the floor models in epsilon_examples.csv
COLUMNS = ("f", "f_ceiling", "f_over_ceiling", "ratio_lo", "ratio_hi", "score", "score_ceiling", "median_eps")


def why_no_epsilon(enabled: bool, ensemble: int, seeds: int) -> str | None:
    """The one line that says why a grid computes no ε score, or None when it does."""
    if not enabled:
        return "ε score not computed: evaluation.epsilon.enabled is false"
    if ensemble >= 2 and seeds >= 3:
        return None
    return (
        "ε score not computed: it needs at least 3 method seeds (the buckets stop at ceil(log(N - 1))) and "
        f"oracle.ensemble >= 2 (this grid: {seeds} seeds, oracle.ensemble = {ensemble})"
    )


def _accuracy(models: list[OracleOutputs], dataset: Dataset, owned: np.ndarray) -> tuple[float, float]:
    """Mean retain (owned ids) and test accuracy over ``models``."""
    y_train, y_test = dataset.y_train.cpu().numpy(), dataset.y_test.cpu().numpy()
    retain = [float((m.logits_train.numpy()[owned].argmax(1) == y_train[owned]).mean()) for m in models]
    test = [float((m.logits_test.numpy().argmax(1) == y_test).mean()) for m in models]
    return float(np.mean(retain)), float(np.mean(test))


def _ratio_interval(method: np.ndarray, ceiling: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% interval of mean(method points) ÷ mean(ceiling points), forget samples resampled in pairs."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(method), size=(resamples, len(method)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = method[idx].mean(axis=1) / ceiling[idx].mean(axis=1)
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return math.nan, math.nan
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def _forget(margins: dict[str, tuple[np.ndarray, np.ndarray]], forget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, [models x forget samples]) of one margins file, in the order of its ids."""
    ids, values = margins["unlearn"]
    keep = np.isin(ids, forget)
    return ids[keep], np.atleast_2d(values)[:, keep].astype(np.float64)


def epsilon_frames(
    out: Path,
    rows: pd.DataFrame,
    methods: list[str],
    scenario: Scenario,
    requests: list[int],
    accuracies: dict[int, dict[str, tuple[float, float]]],
    resamples: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per request, pooled summary, per sample) over the scored unlearn requests in ``requests``.
    ``accuracies[k]``: the members' and the floor's (retain, test) accuracy at request k."""
    runs = rows[["method", "seed", "run_id"]].drop_duplicates().sort_values(["method", "seed"])
    run_ids = {m: list(runs.loc[runs.method == m, "run_id"]) for m in methods}
    per_request, examples = [], []
    pooled: dict[str, list] = {m: [] for m in methods}
    for k in requests:
        request = scenario.requests[k]
        if request.kind != "unlearn":
            continue
        forget = request.ids.numpy()
        ids, members = _forget(read_margins(member_margins_path(out, k)), forget)
        _, floor = _forget(read_margins(floor_margins_path(out, k)), forget)
        eps_floor = example_epsilons(floor, members)
        pts_floor = points(eps_floor, len(floor))
        examples.append(pd.DataFrame({"request": k, "sample": ids, "method": CEILING, "epsilon": eps_floor}))
        acc_members, acc_floor = accuracies[k]["members"], accuracies[k]["floor"]
        at_k = rows[rows.request == k]
        for m in methods:
            runs_m = np.concatenate([_forget(read_margins(run_margins_path(out, r, k)), forget)[1] for r in run_ids[m]])
            eps = example_epsilons(runs_m, members)
            pts = points(eps, len(runs_m))
            mine = at_k[at_k.method == m]
            acc = (float(mine.acc_remain.mean()), float(mine.acc_test.mean()))
            pooled[m].append((pts, pts_floor, acc, acc_members, acc_floor))
            examples.append(pd.DataFrame({"request": k, "sample": ids, "method": m, "epsilon": eps}))
            per_request.append(
                {
                    "request": k,
                    **_row(m, len(runs_m), len(members), pts, pts_floor, acc, acc_members, acc_floor),
                    "median_eps": float(np.median(eps)),
                    "median_eps_ceiling": float(np.median(eps_floor)),
                    **dict(zip(("ratio_lo", "ratio_hi"), _ratio_interval(pts, pts_floor, resamples, k), strict=True)),
                }
            )
    summary = []
    for m, parts in pooled.items():
        if not parts:
            continue
        pts = np.concatenate([p[0] for p in parts])
        pts_floor = np.concatenate([p[1] for p in parts])
        accs = [np.mean([p[i] for p in parts], axis=0) for i in (2, 3, 4)]
        n_runs = len(run_ids[m])
        lo, hi = _ratio_interval(pts, pts_floor, resamples, 0)
        n_members = int(per_request[0]["n_members"])
        summary.append(
            {
                **_row(m, n_runs, n_members, pts, pts_floor, *accs),
                "ratio_lo": lo,
                "ratio_hi": hi,
                "n_requests": len(parts),
            }
        )
    frames = pd.DataFrame(per_request), pd.DataFrame(summary)
    return (*frames, pd.concat(examples, ignore_index=True) if examples else pd.DataFrame())


def _row(
    method: str,
    n_runs: int,
    n_members: int,
    pts: np.ndarray,
    pts_floor: np.ndarray,
    acc: tuple[float, float],
    acc_members: tuple[float, float],
    acc_floor: tuple[float, float],
) -> dict[str, float | int | str]:
    f, ceiling = float(pts.mean()), float(pts_floor.mean())
    return {
        "method": method,
        "n_runs": n_runs,
        "n_members": n_members,
        "n_samples": len(pts),
        "bucket_limit": bucket_limit(n_runs),
        "f": f,
        "f_ceiling": ceiling,
        "f_over_ceiling": f / ceiling if ceiling > 0 else math.nan,
        "score": final_score(f, acc[0], acc_members[0], acc[1], acc_members[1]),
        "score_ceiling": final_score(ceiling, acc_floor[0], acc_members[0], acc_floor[1], acc_members[1]),
    }


def grid_accuracies(
    members: list[ray.ObjectRef], floor: list[ray.ObjectRef], dataset: Dataset, owned: np.ndarray
) -> dict[str, tuple[float, float]]:
    """The members' and the floor models' mean (retain, test) accuracy at one request, from their outputs."""
    return {
        "members": _accuracy(ray.get(members), dataset, owned),
        "floor": _accuracy(ray.get(floor), dataset, owned),
    }


def epsilon_section(summary: pd.DataFrame, note: str | None) -> str:
    """comparison.md's ε section: the table with both counts and where they make the estimate coarse."""
    if summary.empty:
        return f"## ε score (NeurIPS 2023 competition)\n\n{note}\n"
    first = summary.iloc[0]
    n, m, limit = int(first.n_runs), int(first.n_members), float(first.bucket_limit)
    intro = (
        f"Each method's N = {n} runs against M = {m} oracle members, per forget sample of "
        f"{int(first.n_requests)} scored unlearn request(s) ({int(first.n_samples)} samples, pooled; per request "
        f"in epsilon.csv). The ceiling is the same score of {n} exact retrains (seeds other than the members') "
        f"against the same members. With N = {n} the buckets stop at ε = {limit:g} (ceil(log(N − 1))): every ε "
        "from there scores 0, and the maximum over thresholds biases ε upward at small counts, so F is coarse "
        "and far below 1 even for an exact retrain; read F ÷ f_ceiling (an exact retrain: 1, its 95% interval "
        "from resampling the forget samples)."
    )
    cols = ["method", "f", "f_ceiling", "f_over_ceiling", "ratio_lo", "ratio_hi", "score", "score_ceiling"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        lines.append("| " + " | ".join([str(r.method), *(f"{r[c]:.3f}" for c in cols[1:])]) + " |")
    return f"## ε score (NeurIPS 2023 competition)\n\n{intro}\n\n" + "\n".join(lines) + "\n"


__all__ = ["CEILING", "epsilon_frames", "epsilon_section", "grid_accuracies", "why_no_epsilon"]
