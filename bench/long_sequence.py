"""Long-stream benchmarks: a real `clutune study` per preset, with its cost curve and its findings.

- digits: `digits-long-200` (200 requests), ugclu and er, one seed, the exact oracle after every request.
  Checks that per-request seconds and resident memory stay flat: the median over requests 5-15 against the
  median over requests 185-195 (medians of a window, because single requests of a 2-core machine are noisy;
  the point values at 10 and 190 are reported too).
- mnist1d: `mnist1d-long-1000` (1,000 requests), ugclu, er and finetune, one seed, oracle policy every_k
  (`--every`, default 100: 10 exact oracles, 5 of them in the last half so the KL drift has a slope).

The oracles are trained first with `clutune oracles` (timed apart), so the per-request times measure the
methods and their evaluation, not a wait for an oracle task. Writes bench/results/long-<dataset>.md (+ .json and
the study's curves as long-<dataset>-curves.png).

Usage: python bench/long_sequence.py --dataset digits|mnist1d [--every 100] [--out runs/long]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

PRESETS = {
    "digits": ("digits-long-200", "ugclu,er", ["oracle.policy=every"]),
    "mnist1d": ("mnist1d-long-1000", "ugclu,er,finetune", []),
}
EARLY, LATE = range(5, 16), range(185, 196)


def _clutune(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "clutune"), *args], check=True)
    return time.perf_counter() - t0


def flatness(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: step_seconds and rss_mb at requests 10 and 190 and as window medians, with late / early."""
    out = []
    for method, frame in rows.groupby("method"):
        frame = frame.set_index("request")
        record = {"method": method}
        for col in ("step_seconds", "rss_mb"):
            early = frame.loc[frame.index.isin(EARLY), col].median()
            late = frame.loc[frame.index.isin(LATE), col].median()
            record.update({f"{col}@10": frame.at[10, col], f"{col}@190": frame.at[190, col]})
            record.update(
                {f"{col} median 5-15": early, f"{col} median 185-195": late, f"{col} late/early": late / early}
            )
        out.append(record)
    return pd.DataFrame(out)


def markdown(frame: pd.DataFrame) -> str:
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--every", type=int, default=100, help="oracle.every for mnist1d-long-1000")
    parser.add_argument("--out", default="runs/long")
    args = parser.parse_args()
    preset, methods, sets = PRESETS[args.dataset]
    if args.dataset == "mnist1d":
        sets = ["oracle.policy=every_k", f"oracle.every={args.every}"]
    out = Path(args.out) / args.dataset
    shutil.rmtree(out, ignore_errors=True)
    set_args = [a for s in sets for a in ("--set", s)]
    oracle_wall = _clutune("oracles", "--config", preset, *set_args)
    study_wall = _clutune(
        "study",
        "--config",
        preset,
        "--methods",
        methods,
        "--seeds",
        "0",
        "--out",
        str(out / "study"),
        "--tracking-uri",
        f"sqlite:///{(out / 'mlflow.db').resolve()}",
        *set_args,
    )
    rows = pd.read_parquet(out / "study" / "results.parquet")
    results = Path("bench/results")
    shutil.copy(out / "study" / "curves.png", results / f"long-{args.dataset}-curves.png")
    summary = (out / "study" / "summary.md").read_text()
    lines = [
        f"# Long stream: {preset}, methods {methods}, seed 0, {' '.join(sets) or 'preset oracle policy'}",
        "",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}.",
        f"Command: `python bench/long_sequence.py --dataset {args.dataset}`.",
        "",
        f"- `clutune oracles` (all exact oracles the policy needs, trained as Ray tasks): {oracle_wall / 60:.1f} min",
        f"- `clutune study` ({len(rows)} rows): {study_wall / 60:.1f} min wall",
        "",
    ]
    if args.dataset == "digits":
        flat = flatness(rows)
        lines += ["## Per-request cost over the stream", "", markdown(flat), ""]
    lines += [summary]
    (results / f"long-{args.dataset}.md").write_text("\n".join(lines) + "\n")
    per_method = rows.groupby("method")[["seconds", "step_seconds"]].sum().to_dict()
    (results / f"long-{args.dataset}.json").write_text(
        json.dumps({"oracle_wall_s": oracle_wall, "study_wall_s": study_wall, "per_method_s": per_method}, indent=1)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
