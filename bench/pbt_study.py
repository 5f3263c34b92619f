"""Does a population-based schedule beat the best fixed setting over a long stream, at the same compute?

Two sweeps of UG-CLU on one long preset (default `digits-long-200`, its own oracle policy), each of
``--trials`` trials that all run the whole stream on the same run seed(s), so both spend the same compute:

- **pbt**: ``--scheduler pbt``; every ``--interval`` requests the worst quarter copies the complete state of a
  trial of the best quarter and perturbs its hyperparameters (docs/search.md);
- **fixed**: the same number of trials from the default sampler with ASHA off, so every trial runs every
  request: each trial keeps one setting for the whole stream.

Both populations start with one trial at the tuned defaults. Each sweep's trials are ranked by the mean of
``kl_oracle_all`` over the requests the oracle scored, the stream-long objective. A PBT trial that copied
another's state carries that trial's running means, so its objective is that of one continuous stream. The
report gives, per arm, the best trial, the median of the population, the first trial (at the tuned defaults),
the number of copies PBT made, and the best trials' KL per scored request on one plot.

Both arms pick their best on the seed they were run on. The fixed arm's winner is also re-run on fresh seeds
(``--confirm-seeds``); a PBT schedule is not a fixed point and has no such re-run (docs/search.md).

Usage: python bench/pbt_study.py [--preset digits-long-200] [--trials 8] [--interval 20] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

METRIC = "kl_oracle_all"
COLUMN = f"objective_{METRIC}"


def run_arm(args: argparse.Namespace, arm: str, storage: str) -> dict:
    """One sweep; per trial its stream-long objective, and the best trial's KL per scored request."""
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
    if arm == "pbt":
        sets.append(f"sweep.pbt.interval={args.interval}")
    else:
        sets += ["sweep.asha=false", f"sweep.confirm_seeds=[{args.confirm_seeds}]"]
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
    rows = pd.read_parquet(result.sweep_dir / "results.parquet")
    trials = result.trials.sort_values("number")
    best_id = str(trials.loc[trials[COLUMN].idxmin(), "trial_id"])
    per_request = lineage(rows, best_id).groupby("request")[METRIC].mean().dropna()
    copies = 0
    if "exploited_from" in rows:
        copies = int(rows["exploited_from"].fillna("").astype(str).ne("").sum()) // max(1, len(args.seeds.split(",")))
    confirmed = None
    if result.confirmed is not None and len(result.confirmed):
        confirmed = float(result.confirmed.iloc[0][f"confirmed_{METRIC}"])
    return {
        "objectives": trials[COLUMN].astype(float).tolist(),
        "best": float(trials[COLUMN].min()),
        "defaults": float(trials.iloc[0][COLUMN]),  # the first trial runs at the tuned defaults
        "best_trial": best_id,
        "best_params": result.best.get("best_params", {}),
        "copies": copies,
        "confirmed": confirmed,
        "seconds": seconds,
        "curve": {int(k): float(v) for k, v in per_request.items()},
    }


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


def plot(state: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for arm, record in state.items():
        x, y = zip(*sorted((int(k), v) for k, v in record["curve"].items()), strict=True)
        ax.plot(x, y, marker="o", ms=3, lw=1, label=f"{arm}: best trial (mean {record['best']:.4g})")
    ax.set_ylabel(f"{METRIC} (scored requests)")
    ax.set_xlabel("request (PBT: the best trial's stream, through the trials whose state it copied)")
    ax.set_title("UG-CLU: best trial of a PBT population against the best fixed setting", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(args: argparse.Namespace, state: dict, out: Path) -> str:
    lines = [
        f"# Population-based training against the best fixed setting: ugclu on {args.preset}",
        "",
        f"{args.trials} trials per arm, every trial the whole stream on run seed(s) [{args.seeds}], the fixed arm's "
        f"sampler {args.sampler} with seed {args.sampler_seed}; the preset's own oracle policy; PBT decides every "
        f"{args.interval} requests. Objective: {METRIC}, its mean over the requests the oracle scored (lower is "
        "better).",
        "",
        "| arm | best trial | median of the population | first trial (starts at the tuned defaults) | "
        "copies of state | best re-run on fresh seeds | wall minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, r in state.items():
        confirmed = "n/a (a schedule)" if r["confirmed"] is None else f"{r['confirmed']:.4g}"
        lines.append(
            f"| {arm} | {r['best']:.4g} | {np.median(r['objectives']):.4g} | {r['defaults']:.4g} | {r['copies']} | "
            f"{confirmed} | {r['seconds'] / 60:.1f} |"
        )
    if {"pbt", "fixed"} <= set(state):
        p, f = state["pbt"]["best"], state["fixed"]["best"]
        verdict = "lower (better)" if p < f else "higher (worse)" if p > f else "equal"
        lines += [
            "",
            f"PBT's best trial ends {verdict} than the best fixed setting: {p:.4g} against {f:.4g} "
            f"({(p - f) / f:+.1%}).",
        ]
    lines += [
        "",
        "In the fixed arm the first trial is the tuned defaults for the whole stream; in the PBT arm it starts "
        "there and may later copy another trial's state.",
        "",
        "![best trials per request](pbt-study.png)",
        "",
        f"Command: `python bench/pbt_study.py --preset {args.preset} --trials {args.trials} --interval "
        f"{args.interval} --seeds {args.seeds} --sampler {args.sampler} --sampler-seed {args.sampler_seed} "
        f"--confirm-seeds {args.confirm_seeds}" + "".join(f" --set '{s}'" for s in args.sets) + "`",
        "",
    ]
    text = "\n".join(lines)
    (out / "pbt-study.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="digits-long-200")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--seeds", default="0", help="run seeds of every trial")
    parser.add_argument("--sampler", default="gp", help="the fixed arm's sampler (sweep.sampler)")
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--confirm-seeds", default="100,101,102")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--tracking-db", default="runs/pbt-study/mlflow.db")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra config overrides")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from the saved arms")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.tracking_db).parent.mkdir(parents=True, exist_ok=True)
    state_path = out / "pbt-study.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if not args.report_only:
        with tempfile.TemporaryDirectory() as tmp:
            for arm in ("pbt", "fixed"):
                if arm not in state:
                    state[arm] = run_arm(args, arm, tmp)
                    state_path.write_text(json.dumps(state, indent=1))
                    print(f"{arm}: best {state[arm]['best']:.4g} in {state[arm]['seconds'] / 60:.1f} min", flush=True)
    plot(state, out / "pbt-study.png")
    print(report(args, state, out), flush=True)


if __name__ == "__main__":
    main()
