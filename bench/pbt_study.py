"""Does a population-based schedule beat the best fixed setting over a long stream, and does it hold on fresh seeds?

Two sweeps of UG-CLU on one long preset (default `digits-long-200`, its own oracle policy), each of
``--trials`` trials that all run the whole stream on the same run seed(s):

- **pbt**: ``--scheduler pbt``; every ``--interval`` requests the worst quarter copies the complete state of a
  trial of the best quarter and perturbs its hyperparameters (docs/search.md);
- **fixed**: the same number of trials from ``--sampler`` with ASHA off, so every trial runs every request: each
  trial keeps one setting for the whole stream.

Both populations start with one trial at the tuned defaults. Each sweep's trials are ranked by the mean of
``kl_oracle_all`` over the requests the oracle scored. A PBT trial that copied another's state carries that
trial's running means, so its objective is that of one continuous stream: its lineage.

Both arms pick their winner on the seed they were run on, so the picks are in-sample. The confirmation re-runs
both winners from scratch on fresh run seeds (``--confirm-seeds``, never used for picking), paired by seed: the
fixed winner with its one setting, the PBT winner as its lineage's hyperparameter schedule replayed (the
settings each request of the lineage ran with, changed at the same requests). Compute is counted in sample
passes (``samples_processed``, summed), beside trials x requests: settings differ in cost (``K_in`` slow steps).

Raw records go to ``<results>/pbt-study/<name>/``: each arm's per-request rows of every trial (with lineage:
``exploited_from`` and the ``hp_*`` each request ran with) and its trials, the confirmation's rows, and the
command. ``rebuild`` derives pbt-study.md, .json and .png there from them alone.

Usage: python bench/pbt_study.py [--preset digits-long-200] [--trials 8] [--interval 20] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

METRIC = "kl_oracle_all"
COLUMN = f"objective_{METRIC}"
ARMS = ("pbt", "fixed")
TRIAL_COLUMNS = ("trial_id", "number", "status", "requests_done", COLUMN)


def run_arm(args: argparse.Namespace, arm: str, storage: str, folder: Path) -> None:
    """One sweep; its rows and trials are written under ``folder/arm``."""
    import clutune

    sets = [
        f"sweep.seeds=[{args.seeds}]",
        f"sweep.objectives=['{METRIC}']",
        f"sweep.sampler={args.sampler}",
        f"sweep.sampler_seed={args.sampler_seed}",
        f"sweep.experiment=pbt-study-{arm}",
        f"sweep.storage_path={storage}/{arm}",
        "device=cpu",
        *args.sets,
    ]
    sets += [f"sweep.pbt.interval={args.interval}"] if arm == "pbt" else ["sweep.asha=false"]
    start = time.perf_counter()
    result = clutune.sweep(
        args.preset,
        method="ugclu",
        trials=args.trials,
        scheduler="pbt" if arm == "pbt" else "asha",
        overrides=sets,
        concurrency=args.concurrency,
        tracking_uri=f"sqlite:///{Path(args.tracking_db).resolve()}",
        log=lambda *a, **k: None,
    )
    seconds = time.perf_counter() - start
    (folder / arm).mkdir(parents=True, exist_ok=True)
    rows = pd.read_parquet(result.sweep_dir / "results.parquet")
    rows.to_parquet(folder / arm / "results.parquet", compression="zstd")
    trials = result.trials.sort_values("number")
    keep = [c for c in trials if c in TRIAL_COLUMNS or c.startswith("params_") or c.startswith("config/")]
    trials[keep].to_csv(folder / arm / "trials.csv.gz", index=False)
    (folder / arm / "seconds.json").write_text(json.dumps({"seconds": seconds}) + "\n")


def lineage(rows: pd.DataFrame, trial_id: str, before: int | None = None) -> pd.DataFrame:
    """The continuous stream a trial's final state stands on: its own rows from its last copy on, and before that
    the rows of the trial it copied, followed back the same way. Its request mean is the trial's objective."""
    own = rows[rows["trial_id"].astype(str) == trial_id]
    if before is not None:
        own = own[own["request"] < before]
    source = own.get("exploited_from", pd.Series("", index=own.index)).fillna("").astype(str)
    copies = own[source != ""]
    if copies.empty:
        return own
    at = int(copies["request"].max())
    origin = str(source[copies["request"].idxmax()])
    return pd.concat([lineage(rows, origin, at), own[own["request"] >= at]])


def schedule(stream: pd.DataFrame, keys: list[str]) -> list[tuple[int, dict]]:
    """(first request, hyperparameters) of each stretch of a lineage that ran with one setting."""
    out: list[tuple[int, dict]] = []
    for _, row in stream.sort_values("request").iterrows():
        params = {k: row[f"hp_{k}"] for k in keys}
        if not out or params != out[-1][1]:
            out.append((int(row["request"]), params))
    return out


def search_keys(rows: pd.DataFrame) -> list[str]:
    """The hyperparameters of the UG-CLU search space that the rows record."""
    from clutune.platform.search.search_space import default_space_path, load_space

    return [k for k in load_space(default_space_path("ugclu"), "ugclu").distributions if f"hp_{k}" in rows]


def typed(params: dict, defaults: dict) -> dict:
    """Row values (``hp_*``: numbers as floats, flags as booleans, anything else as JSON text) back in the types
    of the method's hyperparameters."""
    out = {}
    for k, v in params.items():
        if isinstance(defaults[k], bool):
            out[k] = bool(v)
        elif isinstance(defaults[k], int):
            out[k] = int(round(float(v)))
        elif isinstance(defaults[k], float):
            out[k] = float(v)
        else:
            out[k] = json.loads(v)
    return out


def hparam_keys(rows: pd.DataFrame) -> list[str]:
    """Every UG-CLU hyperparameter the rows record: a replay sets them all, so it runs with what the trial ran
    with whatever the config's own methods section says."""
    import dataclasses

    from clutune.clu.methods import get_method

    return [f.name for f in dataclasses.fields(get_method("ugclu").Hparams) if f"hp_{f.name}" in rows]


def replay(preset: str, sets: list[str], seed: int, plan: list[tuple[int, dict]]) -> list[dict]:
    """One stream from scratch on ``seed`` that changes its hyperparameters where ``plan`` says, carrying the
    complete state across each change exactly as a PBT copy does (a new method built with the new setting, then
    the state restored into it)."""
    import torch

    from clutune.core.config import load_config
    from clutune.core.experiment import ExperimentRun, method_hparams, prepare

    torch.set_num_threads(1)
    config = load_config(preset, [*sets, "device=cpu"])
    prep = prepare(config)
    dataset = config.dataset.name
    defaults = asdict(method_hparams(config, "ugclu", dataset))
    ends = [start for start, _ in plan[1:]] + [len(prep.scenario)]
    rows: list[dict] = []
    run = None
    for (_, params), end in zip(plan, ends, strict=True):
        hparams = method_hparams(config, "ugclu", dataset, typed(params, defaults))
        fresh = ExperimentRun(prep, "ugclu", hparams, seed)
        if run is not None:
            fresh.restore(run.state())
        run = fresh
        for row in run.steps():
            rows.append({**row, **{f"hp_{k}": v for k, v in params.items()}})
            if run.done == end:
                break
    return rows


def winner(folder: Path, arm: str) -> str:
    trials = pd.read_csv(folder / arm / "trials.csv.gz")
    return str(trials.loc[trials[COLUMN].astype(float).idxmin(), "trial_id"])


def confirm(args: argparse.Namespace, folder: Path) -> None:
    """Both winners from scratch on each confirmation seed, two streams at a time."""
    jobs = []
    seeds = [int(s) for s in args.confirm_seeds.split(",")]
    for arm in ARMS:
        rows = pd.read_parquet(folder / arm / "results.parquet")
        plan = schedule(lineage(rows, winner(folder, arm)), hparam_keys(rows))
        jobs += [(arm, seed, plan) for seed in seeds]
    with ProcessPoolExecutor(max_workers=args.concurrency) as pool:
        futures = [pool.submit(replay, args.preset, args.sets, seed, plan) for _, seed, plan in jobs]
        records = [
            {"arm": arm, **row} for (arm, _, _), future in zip(jobs, futures, strict=True) for row in future.result()
        ]
    (folder / "confirm").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_parquet(folder / "confirm" / "results.parquet", compression="zstd")


def _interval(diffs: np.ndarray) -> dict:
    """Mean paired difference with its 95% t interval and the paired t-test's p-value."""
    n = len(diffs)
    mean = float(diffs.mean())
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "p": None, "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / np.sqrt(n))
    p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": p, "n": n}


def summarize(folder: Path) -> dict:
    """Everything the report states, from the raw records of one study folder."""
    run = json.loads((folder / "run.json").read_text())
    out: dict = {"run": run, "arms": {}}
    for arm in ARMS:
        rows = pd.read_parquet(folder / arm / "results.parquet")
        trials = pd.read_csv(folder / arm / "trials.csv.gz").sort_values("number")
        best = winner(folder, arm)
        keys = search_keys(rows)
        stream = lineage(rows, best)
        plan = schedule(stream, keys)
        copies = rows[rows["exploited_from"].fillna("").astype(str) != ""] if "exploited_from" in rows else rows[:0]
        k_in = stream.sort_values("request")["hp_K_in"].astype(float)
        objectives = trials[COLUMN].astype(float)
        out["arms"][arm] = {
            "trials": len(trials),
            "requests": int(rows["request"].nunique()),
            "trial_requests": len(rows),
            "sample_passes": int(rows["samples_processed"].sum()),
            "best": float(objectives.min()),
            "median": float(objectives.median()),
            "defaults": float(objectives.iloc[0]),  # the first trial runs at the tuned defaults
            "best_trial": best,
            "best_is_first": best == str(trials.iloc[0]["trial_id"]),
            "copies": [
                {"request": int(r["request"]), "trial": str(r["trial_id"]), "from": str(r["exploited_from"])}
                | {k: float(r[f"hp_{k}"]) for k in keys}
                for _, r in copies.sort_values(["request", "trial_id"]).iterrows()
            ],
            "schedule": [{"from_request": start, **{k: float(v) for k, v in p.items()}} for start, p in plan],
            "K_in_first": float(k_in.iloc[0]),
            "K_in_last": float(k_in.iloc[-1]),
            "K_in_mean": float(k_in.mean()),
            "curve": {int(k): float(v) for k, v in stream.groupby("request")[METRIC].mean().dropna().items()},
            "seconds": json.loads((folder / arm / "seconds.json").read_text())["seconds"],
        }
    path = folder / "confirm" / "results.parquet"
    if path.exists():
        rows = pd.read_parquet(path)
        per = rows.groupby(["arm", "seed"]).agg(kl=(METRIC, "mean"), passes=("samples_processed", "sum"))
        seeds = sorted(set(per.loc["pbt"].index) & set(per.loc["fixed"].index))
        pbt, fixed = per.loc["pbt"].loc[seeds], per.loc["fixed"].loc[seeds]
        diffs = (pbt["kl"] - fixed["kl"]).to_numpy()
        out["confirm"] = {
            "seeds": [int(s) for s in seeds],
            "pbt": pbt["kl"].astype(float).tolist(),
            "fixed": fixed["kl"].astype(float).tolist(),
            "pbt_mean": float(pbt["kl"].mean()),
            "fixed_mean": float(fixed["kl"].mean()),
            "diff": _interval(diffs),
            "pbt_better": int((diffs < 0).sum()),
            "pbt_passes": float(pbt["passes"].mean()),
            "fixed_passes": float(fixed["passes"].mean()),
        }
        c = out["confirm"]
        significant = c["diff"]["p"] is not None and c["diff"]["p"] < 0.05
        c["verdict"] = (
            "indistinguishable" if not significant else "pbt better" if c["diff"]["mean"] < 0 else "fixed better"
        )
    arms = out["arms"]
    out["in_sample_change"] = (arms["pbt"]["best"] - arms["fixed"]["best"]) / arms["fixed"]["best"]
    out["passes_ratio"] = arms["pbt"]["sample_passes"] / arms["fixed"]["sample_passes"]
    return out


def plot(summary: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for arm, record in summary["arms"].items():
        x, y = zip(*sorted((int(k), v) for k, v in record["curve"].items()), strict=True)
        ax.plot(x, y, marker="o", ms=3, lw=1, label=f"{arm}: best trial (mean {record['best']:.4g})")
    ax.set_ylabel(f"{METRIC} (scored requests)")
    ax.set_xlabel("request (PBT: the best trial's stream, through the trials whose state it copied)")
    ax.set_title("UG-CLU: best trial of a PBT population against the best fixed setting (pick seed)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def report(summary: dict) -> str:
    run, arms = summary["run"], summary["arms"]
    lines = [
        f"# Population-based training against the best fixed setting: ugclu on {run['preset']}",
        "",
        f"{run['trials']} trials per arm, every trial the whole stream on run seed(s) [{run['seeds']}], the fixed "
        f"arm's sampler {run['sampler']} with seed {run['sampler_seed']}; the preset's own oracle policy; PBT decides "
        f"every {run['interval']} requests. Objective: {METRIC}, its mean over the requests the oracle scored (lower "
        "is better). Each arm picks its best trial on this seed (in-sample).",
        "",
        "| arm | best trial | median of the population | first trial (starts at the tuned defaults) | "
        "copies of state | trials x requests | sample passes | winner's K_in (first, last, stream mean) | "
        "wall minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in arms.items():
        lines.append(
            f"| {arm} | {r['best']:.4g} | {r['median']:.4g} | {r['defaults']:.4g} | {len(r['copies'])} | "
            f"{r['trial_requests']} | {r['sample_passes']:,} | {r['K_in_first']:g}, {r['K_in_last']:g}, "
            f"{r['K_in_mean']:.3g} | {r['seconds'] / 60:.1f} |"
        )
    lines += [
        "",
        f"In-sample, PBT's best trial ends {summary['in_sample_change']:+.1%} against the best fixed setting, with "
        f"{summary['passes_ratio']:.3f}x the fixed arm's sample passes over the whole population.",
    ]
    c = summary.get("confirm")
    if c is not None:
        d = c["diff"]
        lines += [
            "",
            "## Confirmation on fresh seeds",
            "",
            "Both winners re-run from scratch on run seeds never used for picking, paired by seed (PBT: its "
            "lineage's hyperparameter schedule replayed).",
            "",
            "| run seed | PBT schedule | best fixed setting | difference |",
            "|---|---|---|---|",
            *(
                f"| {s} | {p:.4g} | {f:.4g} | {p - f:+.4g} |"
                for s, p, f in zip(c["seeds"], c["pbt"], c["fixed"], strict=True)
            ),
            "",
            f"Mean {c['pbt_mean']:.4g} (PBT schedule) against {c['fixed_mean']:.4g} (fixed); paired difference "
            f"{d['mean']:+.4g}, 95% t interval [{_p(d['low'])}, {_p(d['high'])}], paired t-test p = {_p(d['p'])} "
            f"(n = {d['n']}); PBT lower on {c['pbt_better']} of {d['n']} seeds: {c['verdict']}. Sample passes per "
            f"stream: {c['pbt_passes']:,.0f} (PBT schedule) against {c['fixed_passes']:,.0f} (fixed).",
        ]
    best = arms["pbt"]
    lines += [
        "",
        "## PBT winner's schedule",
        "",
        "| from request | " + " | ".join(k for k in best["schedule"][0] if k != "from_request") + " |",
        "|---|" + "---|" * (len(best["schedule"][0]) - 1),
        *(
            f"| {step['from_request']} | "
            + " | ".join(f"{v:.4g}" for k, v in step.items() if k != "from_request")
            + " |"
            for step in best["schedule"]
        ),
        "",
        "In the fixed arm the first trial is the tuned defaults for the whole stream; in the PBT arm it starts "
        "there and may later copy another trial's state.",
        "",
        "![best trials per request](pbt-study.png)",
        "",
        f"Command: `{run['command']}`",
        "",
    ]
    return "\n".join(lines)


def rebuild(results: Path, out: Path) -> None:
    """pbt-study.md, .json and .png of every study folder under results/pbt-study/ that holds both arms."""
    for folder in sorted((results / "pbt-study").glob("*/")):
        if not all((folder / arm / "results.parquet").exists() for arm in ARMS):
            continue
        summary = summarize(folder)
        target = out / "pbt-study" / folder.name
        target.mkdir(parents=True, exist_ok=True)
        (target / "pbt-study.json").write_text(json.dumps(summary, indent=1) + "\n")
        (target / "pbt-study.md").write_text(report(summary))
        plot(summary, target / "pbt-study.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="digits-long-200")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--seeds", default="0", help="run seeds of every trial")
    parser.add_argument("--sampler", default="gp", help="the fixed arm's sampler (sweep.sampler)")
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--confirm-seeds", default="100,101,102", help="fresh run seeds of the confirmation")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--results", default="bench/results", help="the folder of raw records and derived files")
    parser.add_argument("--name", default=None, help="the study folder under <results>/pbt-study (seed<seeds>)")
    parser.add_argument("--tracking-db", default="runs/pbt-study/mlflow.db")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()
    results = Path(args.results)
    folder = results / "pbt-study" / (args.name or f"seed{args.seeds.replace(',', '-')}")
    folder.mkdir(parents=True, exist_ok=True)
    Path(args.tracking_db).parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "bench/pbt_study.py", *sys.argv[1:]])
    keys = ("preset", "trials", "interval", "seeds", "sampler", "sampler_seed", "confirm_seeds", "sets")
    run = {"command": command, **{k: getattr(args, k) for k in keys}}
    (folder / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        for arm in ARMS:
            if not (folder / arm / "results.parquet").exists():
                run_arm(args, arm, tmp, folder)
                print(f"{arm}: done", flush=True)
    if not (folder / "confirm" / "results.parquet").exists():
        confirm(args, folder)
        print("confirmation: done", flush=True)
    rebuild(results, results)
    print((folder / "pbt-study.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
