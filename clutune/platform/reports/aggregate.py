"""``clutune aggregate``: one number per method across scenarios, with an interval a reviewer accepts.

Eight comparison tables are not a result until they are summarised, and a mean over scenarios lets one easy or
hard scenario dominate. Following Agarwal et al., "Deep RL at the edge of the statistical precipice" (NeurIPS
2021), this reads several ``compare`` or ``study`` folders (one scenario each) and gives per method:

- the normalised score of each (scenario, seed) run: the run's KL to the oracle (``kl_oracle_all``, its mean
  over the requests an oracle scored) divided by the scenario's noise floor. Where the rows carry
  ``oracle_floor`` (an oracle ensemble: the mean pairwise KL among the members of each scored request), the floor
  is the mean of those per-request values; otherwise it is the mean over the ``retrain`` runs of the same folder
  of the run quantity above, and the table says which. Exact retraining with another seed lands this far from
  the oracle, so 1 is the floor and a score of 10 is ten times the floor. Lower is better.
- the interquartile mean (IQM, 25% trimmed mean) of those scores over all runs of all scenarios, robust to one
  outlying scenario, with a 95% stratified bootstrap interval. Each replicate resamples each scenario's runs among
  themselves (the paper's stratified bootstrap) and also the values its floor is the mean of (the per-request
  ``oracle_floor`` values, or the retrain runs), so the interval carries the floor's own uncertainty;
- a performance profile: per threshold tau, the share of runs with a score at or below tau, with 95% bands;
- a leave-one-scenario-out check of the ranking: for each scenario left out, each method's IQM over the others
  and its rank among the approximate methods (exact ones, :attr:`clutune.clu.methods.Method.exact`, are the
  floor and not ranked). A "best overall" that holds only while one scenario is in is a claim about that
  scenario, and this table shows it.

A run whose rows are bit-identical in two folders (a method that ignores the buffer, run in the b200 and the b500
variant of one scenario) is one run, not two: it is counted once, in the first folder, and the table says so.
Floors whose values are identical are likewise resampled as one.

The bootstrap is scipy's (``scipy.stats.bootstrap``, percentile intervals, each of several samples resampled among
themselves), not a hand-written one. The paper's own library, ``rliable`` 1.2, cannot run here: it passes
``random_state`` to ``arch``'s bootstrap, which arch 8 no longer accepts, and arch 7 does not import under
pandas 3.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from clutune.clu.methods import exact_methods
from clutune.core.storage import write_local_atomic, write_local_text
from clutune.errors import UserError
from clutune.platform.record.tracking import RECORD_DIR

FLOOR_METHOD = "retrain"
METRIC = "kl_oracle_all"
FLOOR_COLUMN = "oracle_floor"  # per request: the mean pairwise KL among the oracle members
FROM_MEMBERS = "oracle members"
FROM_RETRAIN = "retrain runs"
# The columns that identify a run's outcome: equal in every request, the run is the same run
IDENTITY = ("kl_oracle_all", "kl_oracle_remain", "kl_oracle_learn", "kl_oracle_unlearn", "kl_oracle_test")
IDENTITY += ("acc_remain", "acc_learn", "acc_unlearn", "acc_test")
REPS = 2000  # bootstrap replications: the interval bounds move by well under 1% between seeds of the bootstrap
CONFIDENCE = 0.95
SEED = 0


@dataclass
class Aggregate:
    """What ``clutune.aggregate`` returns: the per-run scores, the per-method table, the performance profile and
    the floor of each scenario."""

    scores: pd.DataFrame  # one row per (scenario, method, seed): kl, floor, score, duplicate_of
    table: pd.DataFrame  # per method: runs, scenarios, iqm, lo, hi, median
    profile: pd.DataFrame  # per (method, tau): share of runs with score <= tau, lo, hi
    skipped: list[str]  # methods left out: not run in every scenario
    floors: pd.DataFrame  # per scenario: floor, source, n (values it is the mean of), lo, hi
    loso: pd.DataFrame = field(default_factory=pd.DataFrame)  # per (left_out, method): iqm, rank; see leave_one_out

    def to_markdown(self) -> str:
        """The table as the command prints it and ``aggregate.md`` holds it."""
        return markdown(self)


@dataclass
class Floor:
    """A scenario's noise floor: the values it is the mean of, and where they come from."""

    values: np.ndarray
    source: str  # FROM_MEMBERS or FROM_RETRAIN

    @property
    def value(self) -> float:
        return float(self.values.mean())

    def key(self) -> bytes:
        return self.source.encode() + np.ascontiguousarray(self.values, dtype=np.float64).tobytes()


@dataclass
class Stratum:
    """One scenario's counted runs of a method and the floor they are divided by."""

    kl: np.ndarray
    floor: int  # index into the distinct floors


def _scenario(folder: Path) -> str:
    """The scenario's name as its record states it, with the folder's name to tell two runs of one preset."""
    record = folder / RECORD_DIR / "record.json"
    name = ""
    with contextlib.suppress(OSError, ValueError):  # a damaged record only costs the scenario its name
        data = json.loads(record.read_text())
        config = data.get("config") if isinstance(data, dict) else None
        name = config.get("name", "") if isinstance(config, dict) else ""
    name = name if isinstance(name, str) else ""
    return f"{name} ({folder.name})" if name and name != folder.name else folder.name


def _read_rows(folder: Path) -> pd.DataFrame:
    path = folder / "results.parquet"
    if not path.is_file():
        raise UserError(f"aggregate: {folder} holds no results.parquet: not a compare or study folder")
    try:
        present = set(pq.read_schema(path).names)
        wanted = ["method", "seed", "run_id", "request", METRIC, FLOOR_COLUMN, *IDENTITY]
        return pd.read_parquet(path, columns=list(dict.fromkeys(c for c in wanted if c in present)))
    except (OSError, ValueError, pa.ArrowException) as e:  # ArrowInvalid is a ValueError; a truncated file too
        raise UserError(f"aggregate: {path} is not a results table: {str(e).splitlines()[0]}") from None


def _floor(folder: Path, rows: pd.DataFrame, per_run: pd.DataFrame) -> Floor:
    """The members' floor where the rows carry one, else the retrain runs'; refused (one line) when neither
    exists or it is not positive."""
    if FLOOR_COLUMN in rows and rows[FLOOR_COLUMN].notna().any():
        values = rows.groupby("request")[FLOOR_COLUMN].mean().dropna().to_numpy(dtype=np.float64)
        floor = Floor(values, FROM_MEMBERS)
    else:
        values = per_run.loc[per_run["method"] == FLOOR_METHOD, METRIC].dropna().to_numpy(dtype=np.float64)
        if len(values) == 0:
            raise UserError(
                f"aggregate: {folder} has no {FLOOR_METHOD} run with a {METRIC} value and no {FLOOR_COLUMN} column to "
                f"set its noise floor; run the scenario with --methods {FLOOR_METHOD},... or an oracle ensemble"
            )
        floor = Floor(values, FROM_RETRAIN)
    if not floor.value > 0:
        raise UserError(f"aggregate: {folder}: the noise floor from {floor.source} is {floor.value}, not > 0")
    return floor


def _fingerprint(run: pd.DataFrame) -> str:
    """A digest of a run's outcome: its method, seed and every identity column of every request, bit for bit."""
    columns = [c for c in IDENTITY if c in run]
    ordered = run.sort_values("request")
    h = hashlib.sha256(f"{ordered['method'].iloc[0]}|{ordered['seed'].iloc[0]}|{','.join(columns)}".encode())
    h.update(ordered["request"].to_numpy(dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(ordered[columns].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


def load_scores(
    folders: list[Path], seeds: Collection[int] | None = None
) -> tuple[pd.DataFrame, list[str], dict[str, Floor]]:
    """Normalised scores of every run of every folder, and each scenario's floor. Refuses (one line) a folder
    that is not a results folder, has no floor to set (neither an ``oracle_floor`` column nor a retrain run), or
    a floor of zero. Returns the scores of the methods present in every folder (``duplicate_of`` names the
    folder where an identical run was already counted), the names of the others, and the floors. ``seeds``
    counts only the runs of those seeds (folders run on different seed counts, or a run left out), the floor
    included where it comes from retrain runs; each must be in every folder."""
    if not folders:
        raise UserError("aggregate: give at least one compare or study folder")
    if len({f.resolve() for f in folders}) != len(folders):
        raise UserError("aggregate: a folder is named twice")
    frames, floors, seen = [], {}, {}
    for folder in folders:
        rows = _read_rows(folder)
        if seeds is not None:
            missing = sorted(set(seeds) - set(rows["seed"].unique()))
            if missing:
                raise UserError(f"aggregate: {folder} has no run with seed {', '.join(map(str, missing))}")
            rows = rows[rows["seed"].isin(list(seeds))]
        per_run = rows.groupby(["method", "seed", "run_id"])[METRIC].mean().reset_index()
        floor = _floor(folder, rows, per_run)
        scenario = _scenario(folder)
        floors[scenario] = floor
        prints = {key: _fingerprint(run) for key, run in rows.groupby(["method", "seed", "run_id"])}
        keys = list(zip(per_run["method"], per_run["seed"], per_run["run_id"], strict=True))
        duplicate_of = [seen.get(prints[k], "") for k in keys]
        for k in keys:
            seen.setdefault(prints[k], scenario)
        frames.append(
            per_run.assign(
                scenario=scenario, floor=floor.value, score=per_run[METRIC] / floor.value, duplicate_of=duplicate_of
            ).rename(columns={METRIC: "kl"})
        )
    scores = pd.concat(frames, ignore_index=True)
    if scores["scenario"].nunique() != len(folders):
        raise UserError("aggregate: two folders have the same name; give each scenario its own folder name")
    present = scores.groupby("method")["scenario"].nunique()
    everywhere = sorted(present[present == len(folders)].index)
    skipped = sorted(set(present.index) - set(everywhere))
    return scores[scores["method"].isin(everywhere)].reset_index(drop=True), skipped, floors


def strata(scores: pd.DataFrame, floors: dict[str, Floor]) -> tuple[dict[str, list[Stratum]], list[np.ndarray]]:
    """Per method its strata (one per scenario with a counted run), and the distinct floors' values they index,
    as the stratified bootstrap wants: each scenario's runs resampled among themselves, each floor's values too.
    Refuses (one line) unequal run counts across scenarios, and a run with no KL value (a method that never met a
    scored request)."""
    distinct: dict[bytes, int] = {}
    floor_values: list[np.ndarray] = []
    index = {}
    for scenario, floor in floors.items():
        if floor.key() not in distinct:
            distinct[floor.key()] = len(floor_values)
            floor_values.append(floor.values)
        index[scenario] = distinct[floor.key()]
    out = {}
    for method, frame in scores.groupby("method", sort=True):
        if frame["score"].isna().any():
            where = frame.loc[frame["score"].isna(), "scenario"].iloc[0]
            raise UserError(f"aggregate: a {method} run in {where} has no {METRIC} value")
        counts = frame.groupby("scenario", sort=True).size()
        if counts.nunique() != 1:
            listed = ", ".join(f"{s}: {n}" for s, n in counts.items())
            raise UserError(f"aggregate: {method} has different numbers of runs per scenario ({listed})")
        counted = frame[frame["duplicate_of"] == ""]
        out[method] = [
            Stratum(g["kl"].to_numpy(dtype=np.float64), index[s]) for s, g in counted.groupby("scenario", sort=True)
        ]
    return out, floor_values


def _normalised(method_strata: list[Stratum], floor_values: list[np.ndarray]) -> np.ndarray:
    """The counted runs' scores at the floors' point values, pooled."""
    return np.concatenate([s.kl / floor_values[s.floor].mean() for s in method_strata])


def _bootstrap(
    method_strata: list[Stratum],
    floor_values: list[np.ndarray],
    statistic: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
    reps: int,
) -> tuple[float, float]:
    """95% percentile interval of ``statistic`` (of the pooled scores) under the stratified bootstrap: each
    scenario's runs resampled among themselves, and each floor's values among themselves (a floor of one value
    stays fixed), as scipy resamples each of several samples."""
    used = sorted({s.floor for s in method_strata})
    varying = [f for f in used if len(floor_values[f]) > 1]
    fixed = {f: float(floor_values[f].mean()) for f in used if f not in varying}
    samples = [s.kl for s in method_strata] + [floor_values[f] for f in varying]

    def pooled(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        runs, drawn = resampled[: len(method_strata)], resampled[len(method_strata) :]
        divisor = {**fixed, **{f: d.mean(axis=-1, keepdims=True) for f, d in zip(varying, drawn, strict=True)}}
        parts = [r / divisor[s.floor] for r, s in zip(runs, method_strata, strict=True)]
        return statistic(np.concatenate(parts, axis=-1))

    ci = stats.bootstrap(
        samples, pooled, n_resamples=reps, confidence_level=CONFIDENCE, method="percentile", vectorized=True, rng=rng
    ).confidence_interval
    return float(ci.low), float(ci.high)


def _extremes(method_strata: list[Stratum], floor_values: list[np.ndarray]) -> tuple[float, float]:
    """The lowest and highest score any resample can give: a resampled floor lies between its values' extremes."""
    least = min(float((s.kl / floor_values[s.floor].max()).min()) for s in method_strata)
    most = max(float((s.kl / floor_values[s.floor].min()).max()) for s in method_strata)
    return least, most


def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: the mean of the middle half (25% trimmed each side)."""
    return stats.trim_mean(x, 0.25, axis=-1)


ALL = "(none)"  # leave_one_out's left_out value for the ranking over every scenario


def leave_one_out(scores: pd.DataFrame) -> pd.DataFrame:
    """Per scenario left out (and ``ALL``: none), each method's IQM of the counted scores over the remaining
    scenarios and its rank (1 = lowest) among the approximate methods; an exact method's rank is NaN. A run
    counted once for two folders (``duplicate_of``) is counted in the remaining folder when its first folder is
    the one left out."""
    original = scores["duplicate_of"].where(scores["duplicate_of"] != "", scores["scenario"])
    exact = exact_methods(scores["method"].unique())
    records = []
    for left_out in [ALL, *dict.fromkeys(scores["scenario"])]:
        kept = scores.assign(original=original)[scores["scenario"] != left_out]
        kept = kept.drop_duplicates(["method", "seed", "original"])
        per_method = kept.groupby("method")["score"].apply(lambda x: float(iqm(x.to_numpy(dtype=np.float64))))
        ranked = per_method[[m not in exact for m in per_method.index]].rank(method="min")
        for method, value in per_method.sort_values().items():
            records.append({"left_out": left_out, "method": method, "iqm": value, "rank": ranked.get(method)})
    return pd.DataFrame(records, columns=["left_out", "method", "iqm", "rank"]).astype({"rank": float})


def _rank_text(rank: float) -> str:
    return f"{rank:.0f}" if np.isfinite(rank) else "-"


def loso_markdown(loso: pd.DataFrame) -> list[str]:
    """The leave-one-scenario-out ranks as a table (methods by their rank over every scenario), with the line
    that says whether the top method stays on top whichever scenario is left out."""
    if loso.empty or loso["left_out"].nunique() < 3:  # one scenario: nothing to leave out
        return []
    rank = loso.pivot(index="method", columns="left_out", values="rank")
    every = rank[ALL].sort_values(na_position="last")
    scenarios = [s for s in dict.fromkeys(loso["left_out"]) if s != ALL]
    lines = [
        "",
        "Leave one scenario out: each method's rank (1 = lowest IQM) among the approximate methods over the "
        "remaining scenarios; exact methods are the floor and not ranked (-).",
        "",
        "| method | all | " + " | ".join(f"without {s}" for s in scenarios) + " |",
        "|---|---|" + "---|" * len(scenarios),
    ]
    for method in every.index:
        lines.append(
            f"| {method} | {_rank_text(every[method])} | "
            + " | ".join(_rank_text(rank.loc[method, s]) for s in scenarios)
            + " |"
        )
    top = every.index[0] if np.isfinite(every.iloc[0]) else None
    if top is not None:
        lost = [s for s in scenarios if rank.loc[top, s] != 1]
        listed = ", ".join(f"{s} (rank {rank.loc[top, s]:.0f})" for s in lost)
        rests = "that scenario" if len(lost) == 1 else "those scenarios"
        verdict = (
            "and stays first whichever one is left out."
            if not lost
            else f"but not without {listed}: the lead rests on {rests}."
        )
        lines += ["", f"{top} is first with every scenario in, {verdict}"]
    return lines


def _floor_table(floors: dict[str, Floor], rng: np.random.Generator, reps: int) -> pd.DataFrame:
    """Each scenario's floor with a 95% bootstrap interval of its mean (none from a single value)."""
    records = []
    for scenario, floor in floors.items():
        lo = hi = float("nan")
        if len(floor.values) > 1 and np.ptp(floor.values) > 0:
            ci = stats.bootstrap(
                (floor.values,), np.mean, n_resamples=reps, confidence_level=CONFIDENCE, method="percentile", rng=rng
            ).confidence_interval
            lo, hi = float(ci.low), float(ci.high)
        records.append(
            {
                "scenario": scenario,
                "floor": floor.value,
                "source": floor.source,
                "n": len(floor.values),
                "lo": lo,
                "hi": hi,
            }
        )
    return pd.DataFrame(records)


def aggregate(folders: list[Path], reps: int = REPS, seeds: Collection[int] | None = None) -> Aggregate:
    """IQM with stratified bootstrap intervals and the performance profile of every method in every folder
    (only the runs of ``seeds``, where given)."""
    scores, skipped, floors = load_scores(folders, seeds)
    by_method, floor_values = strata(scores, floors)
    if not by_method:
        raise UserError("aggregate: no method ran in every folder")
    rng = np.random.default_rng(SEED)
    records = []
    pooled = {method: _normalised(s, floor_values) for method, s in by_method.items()}
    for method, method_strata in by_method.items():
        lo, hi = _bootstrap(method_strata, floor_values, iqm, rng, reps)
        x = pooled[method]
        records.append(
            {
                "method": method,
                "runs": len(x),
                "scenarios": len(method_strata),
                "iqm": float(iqm(x)),
                "lo": lo,
                "hi": hi,
                "median": float(np.median(x)),
            }
        )
    table = pd.DataFrame(records).sort_values("iqm", ignore_index=True)
    every = np.concatenate(list(pooled.values()))
    taus = np.unique(np.geomspace(max(every.min(), 1e-12) / 1.5, every.max() * 1.5, 60))
    profile = []
    for method, method_strata in by_method.items():
        for tau in taus:
            share = float(np.mean(pooled[method] <= tau))
            least, most = _extremes(method_strata, floor_values)
            if (share == 0.0 and least > tau) or (share == 1.0 and most <= tau):
                lo = hi = share  # every resample agrees, whatever floor it draws: no spread to estimate
            else:
                lo, hi = _bootstrap(method_strata, floor_values, lambda x, t=tau: np.mean(x <= t, axis=-1), rng, reps)
            profile.append({"method": method, "tau": tau, "share": share, "lo": lo, "hi": hi})
    return Aggregate(
        scores=scores,
        table=table,
        profile=pd.DataFrame(profile),
        skipped=skipped,
        floors=_floor_table(floors, rng, reps),
        loso=leave_one_out(scores),
    )


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
    write_local_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
    return fig


def markdown(result: Aggregate) -> str:
    """The aggregate table with its definition, the runs counted once, and the scenarios with their floors."""
    sources = set(result.floors["source"])
    lines = [
        f"Normalised score of a run: its mean {METRIC} over the scored requests / its scenario's noise floor (1 = as "
        "close to the oracle as exact retraining with another seed; lower is better). The floor is the mean "
        f"{FLOOR_COLUMN} (mean pairwise KL among the oracle members) over the scored requests where the rows carry "
        f"it, else the mean of the same run quantity over the {FLOOR_METHOD} runs of the scenario; the floor table "
        "below says which. IQM: interquartile mean over all counted (scenario, seed) runs; 95% stratified bootstrap "
        f"interval ({REPS} replications; each scenario's runs resampled among themselves, and the values each floor "
        "is the mean of too, so the interval carries the floor's uncertainty; scipy.stats.bootstrap, percentile).",
        "",
        "| method | IQM of normalised score | 95% CI | median | runs | scenarios |",
        "|---|---|---|---|---|---|",
    ]
    for r in result.table.itertuples():
        lines.append(
            f"| {r.method} | {r.iqm:.3g} | [{r.lo:.3g}, {r.hi:.3g}] | {r.median:.3g} | {r.runs} | {r.scenarios} |"
        )
    repeats = result.scores[result.scores["duplicate_of"] != ""]
    if len(repeats):
        lines += ["", "Counted once (runs bit-identical in two folders, as a method that ignores the buffer gives):"]
        for method, frame in repeats.groupby("method", sort=True):
            pairs = sorted(set(zip(frame["scenario"], frame["duplicate_of"], strict=True)))
            listed = "; ".join(f"{a} = {b}" for a, b in pairs)
            total = int((result.scores["method"] == method).sum())
            lines.append(f"- {method}: {listed} ({total - len(frame)} runs, not {total})")
    lines += ["", f"| scenario | noise floor of {METRIC} | 95% CI | from | values |", "|---|---|---|---|---|"]
    for r in result.floors.itertuples():
        ci = f"[{r.lo:.4g}, {r.hi:.4g}]" if np.isfinite(r.lo) else "none"
        lines.append(f"| {r.scenario} | {r.floor:.4g} | {ci} | {r.source} | {r.n} |")
    if FROM_RETRAIN in sources:
        lines += [
            "",
            f"A floor from {FROM_RETRAIN}: these folders carry no {FLOOR_COLUMN} (no oracle ensemble), so the floor "
            f"is the {FLOOR_METHOD} runs' own distance to the one oracle.",
        ]
    if result.skipped:
        lines += ["", f"Left out (not run in every scenario): {', '.join(result.skipped)}."]
    lines += loso_markdown(result.loso)
    return "\n".join(lines) + "\n"


def write_aggregate(
    folders: list[Path], out: Path, reps: int = REPS, seeds: Collection[int] | None = None
) -> Aggregate:
    """Everything checked and computed first; then ``out`` gets aggregate.md, aggregate.csv (the table),
    scores.csv (every run's normalised score), floors.csv (each scenario's floor), leave_one_out.csv (the ranks
    without each scenario) and performance_profile.png."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    result = aggregate(folders, reps, seeds)
    out.mkdir(parents=True, exist_ok=True)
    write_local_text(out / "aggregate.md", markdown(result))
    frames = {"aggregate.csv": result.table, "scores.csv": result.scores, "floors.csv": result.floors}
    frames["leave_one_out.csv"] = result.loso
    for name, frame in frames.items():
        write_local_atomic(out / name, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
    profile_figure(result, out / "performance_profile.png")
    return result


__all__ = [
    "Aggregate",
    "Floor",
    "aggregate",
    "leave_one_out",
    "load_scores",
    "markdown",
    "profile_figure",
    "strata",
    "write_aggregate",
]
