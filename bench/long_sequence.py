"""Long-stream benchmarks: a real `clutune study` per preset over several seeds, its cost over the stream and
its findings.

- digits: `digits-long-200` (200 requests), ugclu, er, derpp, sfron and finetune over seeds 0, 1, 2.
- mnist1d: `mnist1d-long-1000` (1,000 requests), ugclu, er and sfron over seeds 0, 1.
- Each preset keeps its own oracle policy (both `every_k`: digits every 10th request, mnist1d every 50th, plus
  the last) unless `--every` is given; the report states the policy the study ran under.
- both: whether per-request cost stays flat, per request kind (a learn and an unlearn do different work), on
  the process CPU seconds each row carries (a loaded machine stretches wall time, not CPU time): per seed, the
  median of the last fifth of the stream over the first fifth, of the training's CPU seconds, of its CPU seconds
  per 1,000 sample passes (a method's own work per request changes while its buffer fills) and of the
  evaluation's CPU seconds; then the mean of that ratio over seeds with its 95% Student-t interval. The wall-time
  medians (and resident memory) are kept beside, pooled over seeds.
- both: the findings, as statements over seeds: each quantity measured per seed (KL to the oracle per quarter
  and its drift, plasticity, the diagnostics at the start and the end), reported as the mean over seeds with its
  95% Student-t interval, with the number of seeds on which the statement held.

The oracles are trained first with `clutune oracles` (timed apart, into a fresh cache in --out unless
`--oracle-cache` names one), so the per-request times measure the methods and their evaluation, not a wait for
an oracle task. The raw records go to bench/results/long-<dataset>/: the study's rows (results.parquet) and
run.json (command, oracle policy, wall times, machine load); :func:`rebuild` derives long-<dataset>.md, .json,
-curves.png and -methods_kl_oracle.png from them alone. `--report-only` runs that rebuild, and with
`--out` holding a study, also redraws the study's own report (summary.md, curves.png, plots/).

Usage: python bench/long_sequence.py --dataset digits|mnist1d [--every 100] [--out runs/long] [--oracle-cache DIR]
       [--methods ugclu,er] [--seeds 0,1] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from clutune.clu.diagnostics import drift_slope
from clutune.platform.record.publish import draw_runs
from clutune.platform.record.tracking import RECORD_DIR
from clutune.platform.reports.plots import method_figures, method_plots, save_figure
from clutune.platform.reports.stats import t_interval
from clutune.platform.reports.study_report import plot_curves, summary_markdown

# preset, default methods, default seeds; each preset keeps its own oracle policy (every_k) unless --every is given
PRESETS = {
    "digits": ("digits-long-200", "ugclu,er,derpp,sfron,finetune", "0,1,2"),
    "mnist1d": ("mnist1d-long-1000", "ugclu,er,sfron", "0,1"),
}
WINDOW = 0.2  # flatness compares the first and the last fifth of the stream (digits: requests 0-39, 160-199)


def _clutune(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clutune.cli", *args], check=True)  # this interpreter's clutune
    return time.perf_counter() - t0


def first_and_last_window(frame: pd.DataFrame, requests: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the stream's first and last WINDOW of its ``requests``: what every late / early compares, wall
    time and CPU time alike."""
    k = round(requests * WINDOW)
    return frame[frame["request"] < k], frame[frame["request"] >= requests - k]


def flatness(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method and request kind, pooled over seeds: early and late medians of each wall-time cost column (and
    of sample passes and resident memory), and late / early. Wall time carries the machine's load; see
    :func:`cpu_ratios` for the cost itself."""
    rows = rows.assign(
        ms_per_k_samples=1e6 * rows["seconds"] / rows["samples_processed"].clip(lower=1),
        eval_seconds=rows["step_seconds"] - rows["seconds"],
    )
    n = int(rows["request"].max()) + 1
    out = []
    for (method, kind), frame in rows.groupby(["method", "kind"]):
        early, late = first_and_last_window(frame, n)
        for col in ("seconds", "step_seconds", "samples_processed", "ms_per_k_samples", "eval_seconds", "rss_mb"):
            a, b = float(early[col].median()), float(late[col].median())
            out.append({"method": method, "kind": kind, "column": col, "early": a, "late": b, "late/early": b / a})
    return pd.DataFrame(out)


# part -> (column, what): the CPU cost of a request, apart for the method's training and the evaluation
CPU_PARTS = {
    "train": ("cpu_seconds", "training CPU s"),
    "train_per_k": ("cpu_ms_per_k_samples", "training CPU ms per 1,000 sample passes"),
    "eval": ("cpu_eval_seconds", "evaluation CPU s"),
}
FLAT_BAND = 0.1  # flat: the 95% interval of late / early over seeds lies within 1 ± this


def cpu_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, kind, seed, part): first- and last-fifth medians of the part's CPU column on that
    seed's run, and late / early."""
    rows = rows.assign(
        cpu_ms_per_k_samples=1e6 * rows["cpu_seconds"] / rows["samples_processed"].clip(lower=1),
        cpu_eval_seconds=rows["cpu_step_seconds"] - rows["cpu_seconds"],
    )
    n = int(rows["request"].max()) + 1
    out = []
    for (method, kind, seed), frame in rows.groupby(["method", "kind", "seed"]):
        early, late = first_and_last_window(frame, n)
        for part, (column, _) in CPU_PARTS.items():
            a, b = float(early[column].median()), float(late[column].median())
            out.append({"method": method, "kind": kind, "seed": seed, "part": part, "early": a, "late": b})
    frame = pd.DataFrame(out)
    return frame.assign(ratio=frame["late"] / frame["early"])


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def cpu_summary(ratios: pd.DataFrame) -> dict:
    """method -> kind -> part -> late / early over seeds: mean, 95% interval (lo, hi; None with one seed), seeds,
    the per-seed ratios, the early and late CPU medians averaged over seeds, and whether it is flat (the whole
    interval within 1 ± FLAT_BAND; never with one seed)."""
    out: dict = {}
    for (method, kind, part), frame in ratios.groupby(["method", "kind", "part"]):
        mean, lo, hi, n = t_interval(frame["ratio"].tolist())
        flat = n > 1 and 1 - FLAT_BAND <= lo and hi <= 1 + FLAT_BAND
        out.setdefault(method, {}).setdefault(kind, {})[part] = {
            "mean": mean,
            "lo": _finite(lo),
            "hi": _finite(hi),
            "n": n,
            "flat": bool(flat),
            "per_seed": frame.sort_values("seed")["ratio"].tolist(),
            "early": float(frame["early"].mean()),
            "late": float(frame["late"].mean()),
        }
    return out


def cpu_table(summary: dict) -> str:
    """Methods and kinds as rows; per part, the early and late CPU medians (mean over seeds) and late / early
    with its 95% interval over seeds, flat ones marked."""
    head = " | ".join(f"{what}: early -> late, late/early" for _, what in CPU_PARTS.values())
    lines = [f"| method | kind | {head} |", "|---|---|" + "---|" * len(CPU_PARTS)]
    for method, kinds in sorted(summary.items()):
        for kind, parts in sorted(kinds.items()):
            cells = []
            for part in CPU_PARTS:
                p = parts[part]
                ratio = _interval(p["per_seed"])
                cells.append(f"{p['early']:.3g} -> {p['late']:.3g}, {ratio}{' (flat)' if p['flat'] else ''}")
            lines.append(f"| {method} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


DIAGNOSTICS = ("dead_units", "weight_magnitude", "effective_rank")
EDGE = 0.05  # diagnostics at the start and the end: the mean over the first and the last 5% of the requests


def per_seed(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, seed): the quantities the findings quote, each measured on that seed's run alone.
    KL numbers use the requests an oracle scored only."""
    n = int(rows["request"].max()) + 1
    edge = max(1, round(n * EDGE))
    out = []
    for (method, seed), frame in rows.groupby(["method", "seed"]):
        frame = frame.sort_values("request")
        scored = frame[frame["oracle_evaluated"].astype(bool)] if "oracle_evaluated" in frame else frame
        quarters = [scored[scored["request"].between(q * n / 4, (q + 1) * n / 4 - 1)] for q in range(4)]
        kl = frame.set_index("request")["kl_oracle_all"].reindex(range(n))
        learn = frame[frame["kind"] == "learn"]
        row = {
            "method": method,
            "seed": seed,
            "kl_mean": scored["kl_oracle_all"].mean(),
            **{f"kl_q{q + 1}": quarters[q]["kl_oracle_all"].median() for q in range(4)},
            "kl_slope": drift_slope(kl.tolist()),
            "acc_learn": learn["acc_learn"].mean(),
            "oracle_acc_learn": learn["oracle_acc_learn"].mean(),
        }
        for d in DIAGNOSTICS:
            row[f"{d}_start"] = frame[d].head(edge).mean()
            row[f"{d}_end"] = frame[d].tail(edge).mean()
        row["kl_drift"] = row["kl_q4"] - row["kl_q1"]
        out.append(row)
    return pd.DataFrame(out)


def _interval(values) -> str:
    """``mean [lo, hi]`` over seeds (95% Student-t); one seed: the value alone."""
    mean, lo, hi, n = t_interval(list(values))
    if math.isnan(mean):
        return "nan"
    return f"{mean:.3g} [{lo:.3g}, {hi:.3g}]" if n > 1 else f"{mean:.3g} (1 seed)"


QUANTITIES = {
    "kl_mean": "KL to the oracle, mean over scored requests",
    "kl_q1": "KL median, 1st quarter",
    "kl_q4": "KL median, 4th quarter",
    "kl_drift": "KL drift (4th - 1st quarter median)",
    "kl_slope": "KL slope per request, last half",
    "acc_learn": "acc_learn (model)",
    "oracle_acc_learn": "acc_learn (oracle)",
    **{f"{d}_{e}": f"{d}, {'first' if e == 'start' else 'last'} 5%" for d in DIAGNOSTICS for e in ("start", "end")},
}


def interval_table(seeds: pd.DataFrame) -> str:
    """Quantities as rows, methods as columns: mean over seeds with its 95% interval."""
    methods = sorted(seeds["method"].unique())
    lines = ["| quantity | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
    for column, label in QUANTITIES.items():
        cells = [_interval(seeds.loc[seeds["method"] == m, column]) for m in methods]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _held(signs: pd.Series, claim: str) -> str:
    held, total = int(signs.sum()), len(signs)
    every = "held on every seed" if held == total else "did **not** hold on every seed"
    return f"{claim} on {held} of {total} seeds ({every})"


def findings(seeds: pd.DataFrame, reference: str = "ugclu") -> list[str]:
    """The findings as statements over seeds: a mean with its 95% interval, and on how many seeds the
    direction held. Comparisons with ``reference`` are paired by seed (same seeds, same oracles)."""
    out = []
    for method, frame in seeds.groupby("method"):
        drift = frame["kl_drift"]
        out.append(
            f"**{method}**: KL to the oracle, 4th- minus 1st-quarter median {_interval(drift)}; "
            + _held(drift > 0, "it rose")
            + f". Last-half slope {_interval(frame['kl_slope'])} per request."
        )
        for d, word in (("dead_units", "rose"), ("effective_rank", "fell")):
            change = frame[f"{d}_end"] - frame[f"{d}_start"]
            sign = change > 0 if word == "rose" else change < 0
            out.append(
                f"**{method}**: {d} from {_interval(frame[f'{d}_start'])} (first 5% of requests) to "
                f"{_interval(frame[f'{d}_end'])} (last 5%); " + _held(sign, f"it {word}") + "."
            )
    if reference in set(seeds["method"]):
        ref = seeds[seeds["method"] == reference].set_index("seed")
        for method, frame in seeds[seeds["method"] != reference].groupby("method"):
            other = frame.set_index("seed")
            common = ref.index.intersection(other.index)
            for column, what in (("kl_mean", "mean KL to the oracle"), ("kl_q4", "4th-quarter KL median")):
                diff = ref.loc[common, column] - other.loc[common, column]
                out.append(
                    f"**{reference} vs {method}** ({what}, paired by seed): difference {_interval(diff)}; "
                    + _held(diff < 0, f"{reference} was closer to the oracle")
                    + "."
                )
    return out


def _summary(values) -> dict:
    mean, lo, hi, n = t_interval(list(values))
    return {"mean": _finite(mean), "lo": _finite(lo), "hi": _finite(hi), "n": n}


def findings_summary(seeds: pd.DataFrame, reference: str = "ugclu") -> dict:
    """The numbers :func:`findings` states, for the documents to quote: per method each quantity's mean over seeds
    with its 95% interval, on how many seeds each direction held, and the differences paired by seed against
    ``reference`` (negative: ``reference`` closer to the oracle) with the seeds on which it was closer."""
    over, held, paired = {}, {}, {}
    for method, frame in seeds.groupby("method"):
        over[method] = {q: _summary(frame[q]) for q in QUANTITIES}
        held[method] = {
            "seeds": len(frame),
            "kl_rose": int((frame["kl_drift"] > 0).sum()),
            "dead_units_rose": int((frame["dead_units_end"] > frame["dead_units_start"]).sum()),
            "effective_rank_fell": int((frame["effective_rank_end"] < frame["effective_rank_start"]).sum()),
        }
    if reference in set(seeds["method"]):
        ref = seeds[seeds["method"] == reference].set_index("seed")
        for method, frame in seeds[seeds["method"] != reference].groupby("method"):
            other = frame.set_index("seed")
            common = ref.index.intersection(other.index)
            paired[method] = {}
            for column in ("kl_mean", "kl_q4"):
                diff = ref.loc[common, column] - other.loc[common, column]
                paired[method][column] = {**_summary(diff), "closer": int((diff < 0).sum())}
    return {"reference": reference, "over_seeds": over, "held": held, "paired": paired}


def markdown(frame: pd.DataFrame) -> str:
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--every", type=int, default=None, help="oracle.every (default: the preset's own policy)")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: the preset's list)")
    parser.add_argument("--seeds", default=None, help="comma-separated run seeds (default: the preset's list)")
    parser.add_argument("--out", default="runs/long")
    parser.add_argument("--oracle-cache", default=None, help="oracle cache to use (default: a fresh one in --out)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the reports from bench/results alone")
    args = parser.parse_args()
    dataset, results = args.dataset, Path("bench/results")
    out = Path(args.out) / dataset
    if args.report_only:
        if (out / "study" / "results.parquet").exists():
            redraw_study(out / "study", pd.read_parquet(out / "study" / "results.parquet"))
        rebuild(results, results)
        return
    preset, methods, seeds = PRESETS[dataset]
    methods, seeds = args.methods or methods, args.seeds or seeds
    sets = [] if args.every is None else ["oracle.policy=every_k", f"oracle.every={args.every}"]
    # A fresh oracle cache unless one is named: the oracle time is then the cost of training them all.
    cache = args.oracle_cache or str(out.resolve() / "oracles")
    set_args = [a for s in [*sets, f"oracle.cache_dir={cache}"] for a in ("--set", s)]
    shutil.rmtree(out, ignore_errors=True)
    start = _load()
    oracle_wall, study_wall = run(preset, methods, seeds, out, set_args)
    rows = pd.read_parquet(out / "study" / "results.parquet")
    command = " ".join(
        ["python bench/long_sequence.py --dataset", dataset]
        + ([f"--every {args.every}"] if args.every is not None else [])
        + ([f"--methods {args.methods}"] if args.methods else [])
        + ([f"--seeds {args.seeds}"] if args.seeds else [])
    )
    meta = {
        "command": command,
        "preset": preset,
        "methods": methods,
        "seeds": seeds,
        "oracle_policy": redraw_study(out / "study", rows),
        "oracle_wall_s": oracle_wall,
        "study_wall_s": study_wall,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load": f"load average {start} at the start, {_load()} at the end (2 cores: above 2, work was queued)",
    }
    save_records(results / f"long-{dataset}", rows, meta)
    rebuild(results, results)


def save_records(folder: Path, rows: pd.DataFrame, meta: dict) -> None:
    """The raw records a rebuild reads: the study's rows and what the rows do not hold (command, wall times)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / "results.parquet", compression="zstd")
    (folder / "run.json").write_text(json.dumps(meta, indent=1) + "\n")


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def run(preset: str, methods: str, seeds: str, out: Path, set_args: list[str]) -> tuple[float, float]:
    oracle_wall = _clutune("oracles", "--config", preset, *set_args)
    study_wall = _clutune(
        "study",
        "--config",
        preset,
        "--methods",
        methods,
        "--seeds",
        seeds,
        "--out",
        str(out / "study"),
        "--tracking-uri",
        f"sqlite:///{(out / 'mlflow.db').resolve()}",
        *set_args,
    )
    return oracle_wall, study_wall


def redraw_study(study: Path, rows: pd.DataFrame) -> str:
    """The study's own report redrawn from its rows with the current code: curves.png, summary.md (header
    with the oracle policy it ran under) and plots/ (per-run and per-method figures). Returns the policy."""
    record = study / RECORD_DIR / "record.json"
    config = json.loads(record.read_text()).get("config", {}) if record.exists() else {}
    oracle = config.get("oracle", {})
    policy = oracle.get("policy", "?") + (f" every {oracle.get('every')}" if oracle.get("policy") == "every_k" else "")
    methods = ", ".join(sorted(rows["method"].unique()))
    n = int(rows["request"].max()) + 1
    header = (
        f"# Study {config.get('name', study.name)}: {methods} over {n} requests\n\n{_policy_line(rows, policy)}\n\n"
    )
    (study / "summary.md").write_text(header + summary_markdown(rows))
    plot_curves(rows, study / "curves.png")
    draw_runs(study, rows)
    method_plots(rows, study / "plots", f"{config.get('name', study.name)} study")
    return policy


def _policy_line(rows: pd.DataFrame, policy: str) -> str:
    n = int(rows["request"].max()) + 1
    scored = int(rows[rows["run_id"] == rows["run_id"].iloc[0]]["oracle_evaluated"].sum())
    return f"Oracle policy `{policy}`: {scored} of {n} requests scored against an exact oracle."


def rebuild(results: Path, out: Path) -> None:
    """long-<dataset>.md, .json, -curves.png and -methods_kl_oracle.png for every long-<dataset>/ record under
    ``results``, written under ``out``; reads the raw records only, no training."""
    out.mkdir(parents=True, exist_ok=True)
    for folder in sorted(results.glob("long-*/")):
        if (folder / "results.parquet").exists():
            meta = json.loads((folder / "run.json").read_text())
            report(folder.name, without_diverged(pd.read_parquet(folder / "results.parquet"), meta), meta, out)


def without_diverged(rows: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The rows of the runs that reached the end: a run whose outputs stopped being finite ends early, and its
    first and last fifths would be other requests than every other run's. Its rows stay in the records."""
    diverged = {(d["method"], d["seed"]) for d in meta.get("diverged", [])}
    keep = [(m, s) not in diverged for m, s in zip(rows["method"], rows["seed"], strict=True)]
    return rows[keep].reset_index(drop=True)


def report(name: str, rows: pd.DataFrame, meta: dict, out: Path) -> None:
    """One study's derived files, ``name`` (long-<dataset>) their stem."""
    policy = meta["oracle_policy"]
    plot_curves(rows, out / f"{name}-curves.png")
    save_figure(
        method_figures(rows, f"{meta['preset']} study")["methods_kl_oracle.png"], out / f"{name}-methods_kl_oracle.png"
    )
    seed_rows = per_seed(rows)
    cpu = cpu_summary(cpu_ratios(rows))
    threads = sorted(int(t) for t in rows["intra_op_threads"].unique())
    lines = [
        f"# Long stream: {meta['preset']}, methods {meta['methods']}, seeds {meta['seeds']}, oracle policy {policy}",
        "",
        f"Machine: {meta['machine']}; {meta['load']}.",
        f"Command: `{meta['command']}` (derived files only, from the records: add `--report-only`).",
        "",
        "- `clutune oracles` (all exact oracles the policy needs, trained as Ray tasks): "
        f"{meta['oracle_wall_s'] / 60:.1f} min",
        f"- `clutune study` ({len(rows)} rows): {meta['study_wall_s'] / 60:.1f} min wall",
        *[
            f"- {d['method']}, seed {d['seed']}: diverged at request {d['request']} ({d['reason']}); left out of "
            "every number below, its rows kept in the records"
            for d in meta.get("diverged", [])
        ],
        *([f"- {meta['note']}"] if meta.get("note") else []),
        "",
        "## Findings over seeds",
        "",
        "Each number: mean over seeds [95% Student-t interval]; each statement says on how many seeds it held. "
        f"KL numbers use the requests the oracle policy ({policy}) scored.",
        "",
        *[f"- {f}" for f in findings(seed_rows)],
        "",
        "## Findings in numbers (per seed, then over seeds)",
        "",
        interval_table(seed_rows),
        "",
        "## Per-request CPU cost over the stream (first fifth against last fifth)",
        "",
        f"Process CPU seconds of each request (intra-op threads per run: {', '.join(map(str, threads))}). Per seed, "
        "the median over the last fifth of the stream divided by the median over the first fifth; each cell: the "
        "early and late medians (mean over seeds), then late/early as mean over seeds [95% Student-t interval]. "
        f"(flat): the whole interval lies within 1 ± {FLAT_BAND:g}.",
        "",
        cpu_table(cpu),
        "",
        "## Per-request wall time over the stream (first fifth against last fifth, pooled over seeds)",
        "",
        "Wall time includes waiting for a core: it follows the machine's load, noted above.",
        "",
        markdown(flatness(rows)),
        "",
        _policy_line(rows, policy),
        "",
        summary_markdown(rows),
    ]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    per_method = rows.groupby("method")[["seconds", "step_seconds", "cpu_seconds", "cpu_step_seconds"]].sum()
    summary = {
        "command": meta["command"],
        "preset": meta["preset"],
        "oracle_wall_s": meta["oracle_wall_s"],
        "study_wall_s": meta["study_wall_s"],
        "load": meta["load"],
        "diverged": meta.get("diverged", []),
        "oracle_policy": policy,
        "seeds": sorted(int(s) for s in rows["seed"].unique()),
        "intra_op_threads": threads,
        "window": WINDOW,
        "flat_band": FLAT_BAND,
        "per_method_s": per_method.to_dict(),
        "cpu_late_over_early": cpu,
        "findings": findings_summary(seed_rows),
        "per_seed": seed_rows.to_dict(orient="records"),
    }
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
