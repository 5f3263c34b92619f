"""``clutune aggregate``: one number per method across scenarios, with an interval a reviewer accepts.

Eight comparison tables are not a result until they are summarised, and a mean over scenarios lets one easy or
hard scenario dominate. Following Agarwal et al., "Deep RL at the edge of the statistical precipice" (NeurIPS
2021), this reads several ``compare`` or ``study`` folders (one scenario each) and gives per method:

- the normalised score of each (scenario, seed) run: the run's KL to the oracle (``kl_oracle_all``, its mean
  over the requests an oracle scored) divided by the scenario's retrain noise floor, the mean over the
  ``retrain`` runs of the same folder of that same quantity. Exact retraining with another seed lands this far
  from the oracle, so 1 is the floor and a score of 10 is ten times the floor. Lower is better.
- the interquartile mean (IQM, 25% trimmed mean) of those scores over all runs of all scenarios, robust to one
  outlying scenario, with a 95% stratified bootstrap interval (runs resampled within each scenario);
- a performance profile: per threshold tau, the share of runs with a score at or below tau, with 95% bands.

The bootstrap is scipy's (``scipy.stats.bootstrap``, percentile intervals, each scenario's runs resampled among
themselves: the paper's stratified bootstrap), not a hand-written one. The paper's own library, ``rliable``
1.2, cannot run here: it passes ``random_state`` to ``arch``'s bootstrap, which arch 8 no longer accepts, and
arch 7 does not import under pandas 3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from clutune.errors import UserError
from clutune.platform.record.tracking import RECORD_DIR

FLOOR_METHOD = "retrain"
METRIC = "kl_oracle_all"
REPS = 2000  # bootstrap replications: the interval bounds move by well under 1% between seeds of the bootstrap
CONFIDENCE = 0.95
SEED = 0


@dataclass
class Aggregate:
    """What ``clutune.aggregate`` returns: the per-run scores, the per-method table and the performance profile."""

    scores: pd.DataFrame  # one row per (scenario, method, seed): kl, floor, score
    table: pd.DataFrame  # per method: runs, scenarios, iqm, lo, hi, median
    profile: pd.DataFrame  # per (method, tau): share of runs with score <= tau, lo, hi
    skipped: list[str]  # methods left out: not run in every scenario

    def to_markdown(self) -> str:
        """The table as the command prints it and ``aggregate.md`` holds it."""
        return markdown(self)


def _scenario(folder: Path) -> str:
    """The scenario's name as its record states it, with the folder's name to tell two runs of one preset."""
    record = folder / RECORD_DIR / "record.json"
    name = ""
    if record.exists():
        name = (json.loads(record.read_text()).get("config") or {}).get("name", "")
    return f"{name} ({folder.name})" if name and name != folder.name else folder.name


def load_scores(folders: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """Normalised scores of every run of every folder; refuses (one line) a folder that is not a results
    folder, has no retrain run to set its noise floor, or a floor of zero. Returns the scores of the methods
    present in every folder, and the names of the others."""
    if not folders:
        raise UserError("aggregate: give at least one compare or study folder")
    if len({f.resolve() for f in folders}) != len(folders):
        raise UserError("aggregate: a folder is named twice")
    frames = []
    for folder in folders:
        if not (folder / "results.parquet").is_file():
            raise UserError(f"aggregate: {folder} holds no results.parquet: not a compare or study folder")
        rows = pd.read_parquet(folder / "results.parquet", columns=["method", "seed", "run_id", METRIC])
        per_run = rows.groupby(["method", "seed", "run_id"])[METRIC].mean().reset_index()
        floor_runs = per_run[per_run["method"] == FLOOR_METHOD][METRIC].dropna()
        if floor_runs.empty:
            raise UserError(
                f"aggregate: {folder} has no {FLOOR_METHOD} run with a {METRIC} value to set its noise floor; "
                f"run the scenario with --methods {FLOOR_METHOD},..."
            )
        floor = float(floor_runs.mean())
        if not floor > 0:
            raise UserError(f"aggregate: {folder}: the {FLOOR_METHOD} noise floor of {METRIC} is {floor}, not > 0")
        frames.append(
            per_run.assign(scenario=_scenario(folder), floor=floor, score=per_run[METRIC] / floor).rename(
                columns={METRIC: "kl"}
            )
        )
    scores = pd.concat(frames, ignore_index=True)
    if scores["scenario"].nunique() != len(folders):
        raise UserError("aggregate: two folders have the same name; give each scenario its own folder name")
    present = scores.groupby("method")["scenario"].nunique()
    everywhere = sorted(present[present == len(folders)].index)
    skipped = sorted(set(present.index) - set(everywhere))
    return scores[scores["method"].isin(everywhere)].reset_index(drop=True), skipped


def score_matrices(scores: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per method a (runs x scenarios) matrix, as the stratified bootstrap wants: the runs of one
    scenario resampled among themselves. Refuses (one line) unequal run counts across scenarios, and a run
    with no KL value (a method that never met a scored request)."""
    out = {}
    for method, frame in scores.groupby("method", sort=True):
        if frame["score"].isna().any():
            where = frame.loc[frame["score"].isna(), "scenario"].iloc[0]
            raise UserError(f"aggregate: a {method} run in {where} has no {METRIC} value")
        columns = [g["score"].to_numpy() for _, g in frame.groupby("scenario", sort=True)]
        if len({len(c) for c in columns}) != 1:
            counts = ", ".join(f"{s}: {len(g)}" for s, g in frame.groupby("scenario", sort=True))
            raise UserError(f"aggregate: {method} has different numbers of runs per scenario ({counts})")
        out[method] = np.stack(columns, axis=1)
    return out


def _bootstrap(matrix: np.ndarray, statistic, rng: np.random.Generator, reps: int) -> tuple[float, float]:
    """95% percentile interval of ``statistic`` (of the pooled runs) under the stratified bootstrap: each
    scenario's runs (a column) resampled among themselves, as scipy resamples each of several samples."""
    columns = [matrix[:, j] for j in range(matrix.shape[1])]

    def pooled(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(np.concatenate(samples, axis=-1))

    ci = stats.bootstrap(
        columns, pooled, n_resamples=reps, confidence_level=CONFIDENCE, method="percentile", vectorized=True, rng=rng
    ).confidence_interval
    return float(ci.low), float(ci.high)


def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: the mean of the middle half (25% trimmed each side)."""
    return stats.trim_mean(x, 0.25, axis=-1)


def aggregate(folders: list[Path], reps: int = REPS) -> Aggregate:
    """IQM with stratified bootstrap intervals and the performance profile of every method in every folder."""
    scores, skipped = load_scores(folders)
    matrices = score_matrices(scores)
    if not matrices:
        raise UserError("aggregate: no method ran in every folder")
    rng = np.random.default_rng(SEED)
    records = []
    for method, m in matrices.items():
        lo, hi = _bootstrap(m, iqm, rng, reps)
        records.append(
            {
                "method": method,
                "runs": m.size,
                "scenarios": m.shape[1],
                "iqm": float(iqm(m.ravel())),
                "lo": lo,
                "hi": hi,
                "median": float(np.median(m)),
            }
        )
    table = pd.DataFrame(records).sort_values("iqm", ignore_index=True)
    every = np.concatenate([m.ravel() for m in matrices.values()])
    taus = np.unique(np.geomspace(max(every.min(), 1e-12) / 1.5, every.max() * 1.5, 60))
    profile = []
    for method, m in matrices.items():
        for tau in taus:
            share = float(np.mean(m <= tau))
            if share in (0.0, 1.0):  # every resample agrees: no spread to estimate
                lo = hi = share
            else:
                lo, hi = _bootstrap(m, lambda x, t=tau: np.mean(x <= t, axis=-1), rng, reps)
            profile.append({"method": method, "tau": tau, "share": share, "lo": lo, "hi": hi})
    return Aggregate(scores=scores, table=table, profile=pd.DataFrame(profile), skipped=skipped)


def profile_figure(result: Aggregate, path: Path) -> Figure:
    """The performance profile as a PNG at ``path``: one curve per method, its 95% band shaded."""
    fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    order = list(result.table["method"])
    for i, method in enumerate(order):
        p = result.profile[result.profile["method"] == method]
        colour, dash = f"C{i % 10}", "-" if i < 10 else "--"  # ten colours, then dashed: no two curves alike
        ax.plot(p["tau"], p["share"], color=colour, linestyle=dash, lw=1.6, label=method, drawstyle="steps-post")
        ax.fill_between(p["tau"], p["lo"], p["hi"], color=colour, alpha=0.15, lw=0, step="post")
    ax.axvline(1.0, color="grey", lw=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"τ: {METRIC} / retrain noise floor of the same scenario (log scale; 1 = the floor)")
    ax.set_ylabel("share of (scenario, seed) runs with score ≤ τ")
    n = result.table["scenarios"].max()
    ax.set_title(f"Performance profile over {n} scenario{'s' if n != 1 else ''} (95% stratified bootstrap bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, format="png")
    return fig


def markdown(result: Aggregate) -> str:
    """The aggregate table with its definition, and the scenarios with their floors."""
    lines = [
        f"Normalised score of a run: its mean {METRIC} over the scored requests / the mean of the same quantity "
        f"over the {FLOOR_METHOD} runs of its scenario (the retrain noise floor; 1 = as close to the oracle as "
        "exact retraining with another seed; lower is better). IQM: interquartile mean over all (scenario, "
        f"seed) runs; 95% stratified bootstrap interval ({REPS} replications, runs resampled within each "
        "scenario; scipy.stats.bootstrap, percentile).",
        "",
        "| method | IQM of normalised score | 95% CI | median | runs | scenarios |",
        "|---|---|---|---|---|---|",
    ]
    for r in result.table.itertuples():
        lines.append(
            f"| {r.method} | {r.iqm:.3g} | [{r.lo:.3g}, {r.hi:.3g}] | {r.median:.3g} | {r.runs} | {r.scenarios} |"
        )
    floors = result.scores.groupby("scenario")["floor"].first()
    lines += ["", "| scenario | retrain noise floor of " + METRIC + " |", "|---|---|"]
    lines += [f"| {s} | {f:.4g} |" for s, f in floors.items()]
    if result.skipped:
        lines += ["", f"Left out (not run in every scenario): {', '.join(result.skipped)}."]
    return "\n".join(lines) + "\n"


def write_aggregate(folders: list[Path], out: Path, reps: int = REPS) -> Aggregate:
    """Everything checked and computed first; then ``out`` gets aggregate.md, aggregate.csv (the table),
    scores.csv (every run's normalised score) and performance_profile.png."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    result = aggregate(folders, reps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "aggregate.md").write_text(markdown(result))
    result.table.to_csv(out / "aggregate.csv", index=False)
    result.scores.to_csv(out / "scores.csv", index=False)
    profile_figure(result, out / "performance_profile.png")
    return result


__all__ = ["Aggregate", "aggregate", "load_scores", "markdown", "profile_figure", "score_matrices", "write_aggregate"]
