"""Long-stream benchmarks: a real `clutune study` per preset, with its cost curve and its findings.

- digits: `digits-long-200` (200 requests), ugclu and er, one seed, the exact oracle after every request.
- both: checks that per-request cost stays flat, per request kind (a learn and an unlearn do different work):
  medians over the first fifth of the stream against the last fifth of the method's seconds, of its seconds
  per 1,000 sample passes (a method's own work per request grows while its buffer fills and the owned set
  grows), of the evaluation's seconds (step_seconds - seconds) and of the resident memory.
- both: the numbers README's findings quote (KL to the oracle per quarter, plasticity, diagnostics at the start
  and the end).
- mnist1d: `mnist1d-long-1000` (1,000 requests), ugclu, er and finetune, one seed, oracle policy every_k
  (`--every`, default 100: 10 exact oracles, 5 of them in the last half so the KL drift has a slope).

The oracles are trained first with `clutune oracles` (timed apart, into a fresh cache in --out unless
`--oracle-cache` names one), so the per-request times measure the methods and their evaluation, not a wait for
an oracle task. Writes bench/results/long-<dataset>.md (+ .json and
the study's curves as long-<dataset>-curves.png).

Usage: python bench/long_sequence.py --dataset digits|mnist1d [--every 100] [--out runs/long] [--oracle-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

# preset, default methods, default seeds; each preset keeps its own oracle policy (every_k) unless --every is given
PRESETS = {
    "digits": ("digits-long-200", "ugclu,er,derpp,sfron,finetune", "0,1,2"),
    "mnist1d": ("mnist1d-long-1000", "ugclu,er,sfron", "0,1"),
}
WINDOW = 0.2  # flatness compares the first and the last fifth of the stream (digits: requests 0-39, 160-199)


def _clutune(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "clutune"), *args], check=True)
    return time.perf_counter() - t0


def flatness(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method and request kind: early and late medians of each cost column, and late / early."""
    rows = rows.assign(
        ms_per_k_samples=1e6 * rows["seconds"] / rows["samples_processed"].clip(lower=1),
        eval_seconds=rows["step_seconds"] - rows["seconds"],
    )
    n = int(rows["request"].max()) + 1
    k = round(n * WINDOW)
    out = []
    for (method, kind), frame in rows.groupby(["method", "kind"]):
        early, late = frame[frame["request"] < k], frame[frame["request"] >= n - k]
        for col in ("seconds", "step_seconds", "samples_processed", "ms_per_k_samples", "eval_seconds", "rss_mb"):
            a, b = float(early[col].median()), float(late[col].median())
            out.append({"method": method, "kind": kind, "column": col, "early": a, "late": b, "late/early": b / a})
    return pd.DataFrame(out)


DIAGNOSTICS = ("dead_units", "weight_magnitude", "effective_rank")


def findings(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: the request mean, per-quarter medians and maximum of the KL to the oracle (rows with an oracle
    only), plasticity next to the oracle's on learn requests, and each diagnostic over the first and the last 5%
    of the stream: the numbers README's findings quote."""
    out = []
    n = int(rows["request"].max()) + 1
    for method, frame in rows.groupby("method"):
        frame = frame.sort_values("request")
        scored = frame[frame["oracle_evaluated"].astype(bool)] if "oracle_evaluated" in frame else frame
        quarters = [scored[scored["request"].between(q * n / 4, (q + 1) * n / 4 - 1)] for q in range(4)]
        learn = frame[frame["kind"] == "learn"]
        row = {
            "method": method,
            "kl mean": scored["kl_oracle_all"].mean(),
            "kl median per quarter": " -> ".join(f"{q['kl_oracle_all'].median():.3g}" for q in quarters),
            "kl max": scored["kl_oracle_all"].max(),
            "acc_learn (model / oracle)": f"{learn['acc_learn'].mean():.3f} / {learn['oracle_acc_learn'].mean():.3f}",
        }
        head, tail = frame.head(max(1, n // 20)), frame.tail(max(1, n // 20))  # first and last 5% of requests
        for d in DIAGNOSTICS:
            row[d] = f"{head[d].mean():.3g} -> {tail[d].mean():.3g}"
        out.append(row)
    return pd.DataFrame(out)


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
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from an earlier run in --out")
    args = parser.parse_args()
    dataset = args.dataset
    preset, methods, seeds = PRESETS[dataset]
    methods, seeds = args.methods or methods, args.seeds or seeds
    sets = [] if args.every is None else ["oracle.policy=every_k", f"oracle.every={args.every}"]
    out = Path(args.out) / dataset
    # A fresh oracle cache unless one is named: the oracle time is then the cost of training them all.
    cache = args.oracle_cache or str(out.resolve() / "oracles")
    set_args = [a for s in [*sets, f"oracle.cache_dir={cache}"] for a in ("--set", s)]
    if args.report_only:
        walls = json.loads((out / "walls.json").read_text())
        oracle_wall, study_wall, load = (
            walls["oracle_wall_s"],
            walls["study_wall_s"],
            walls.get("load", "load not recorded"),
        )
    else:
        shutil.rmtree(out, ignore_errors=True)
        start = _load()
        oracle_wall, study_wall = run(preset, methods, seeds, out, set_args)
        load = f"load average {start} at the start, {_load()} at the end (2 cores: above 2, work was queued)"
        walls = {"oracle_wall_s": oracle_wall, "study_wall_s": study_wall, "load": load}
        (out / "walls.json").write_text(json.dumps(walls))  # the report can be rebuilt with --report-only
    report(dataset, preset, methods, seeds, sets, out, oracle_wall, study_wall, load)


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


def report(
    dataset: str,
    preset: str,
    methods: str,
    seeds: str,
    sets: list[str],
    out: Path,
    oracle_wall: float,
    study_wall: float,
    load: str,
) -> None:
    rows = pd.read_parquet(out / "study" / "results.parquet")
    results = Path("bench/results")
    shutil.copy(out / "study" / "curves.png", results / f"long-{dataset}-curves.png")
    summary = (out / "study" / "summary.md").read_text()
    policy = " ".join(sets) or "the preset's own oracle policy"
    lines = [
        f"# Long stream: {preset}, methods {methods}, seeds {seeds}, {policy}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; {load}.",
        f"Command: `python bench/long_sequence.py --dataset {dataset}`.",
        "",
        f"- `clutune oracles` (all exact oracles the policy needs, trained as Ray tasks): {oracle_wall / 60:.1f} min",
        f"- `clutune study` ({len(rows)} rows): {study_wall / 60:.1f} min wall",
        "",
    ]
    lines += ["## Per-request cost over the stream (first fifth against last fifth)", "", markdown(flatness(rows)), ""]
    lines += ["## Findings in numbers", "", markdown(findings(rows)), "", summary]
    (results / f"long-{dataset}.md").write_text("\n".join(lines) + "\n")
    per_method = rows.groupby("method")[["seconds", "step_seconds"]].sum().to_dict()
    (results / f"long-{dataset}.json").write_text(
        json.dumps(
            {"oracle_wall_s": oracle_wall, "study_wall_s": study_wall, "load": load, "per_method_s": per_method},
            indent=1,
        )
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
