"""README's comparison tables: every method at equal memory, on fresh seeds, with its tuned defaults.

For each preset of a dataset (agnostic-class and random) and each of the dataset's two memory budgets, runs
`clutune compare` over all methods (exact retrain included, as the noise floor) on the confirmation seeds
100, 101, 102 (never used for tuning), with `--set buffer_size=B` so every replaying method keeps the same
number of samples. Writes bench/results/compare-<preset>-b<B>.md, prints the exact commands, and keeps every run's
rows in bench/results/compare-runs/<preset>-b<B>/results.parquet (all batches together), the folders that
`clutune aggregate bench/results/compare-runs/*` summarises across scenarios.

Methods can be run in batches (`--batch NAME --methods ...`, each its own `clutune compare` folder on the same
cached oracles); every run of the script rebuilds the tables from all batches found.

`--ensemble M` (M >= 2) scores against M oracle members, which adds the ensemble columns and KLoM beside its floor
(3 seeds against M = 8: the counts bench/results/klom_power.md chose). Its folders, tables and rows are apart from
the M = 1 ones, so the aggregate's scenarios are not counted twice: runs/compare-m<M>/, bench/results/
compare-m<M>-<preset>-b<B>.md, and bench/results/klom-runs/<preset>-b<B>-m<M>/ (results.parquet and klom.csv.gz).
Each command's wall seconds go into the table's header; `--oracle-cache DIR` trains the oracles into DIR (a fresh
folder: the cost of a table from scratch).

Usage: python bench/compare_tables.py --dataset digits|mnist1d [--methods ...] [--batch NAME] [--tables-only]
       [--presets random] [--budgets 200] [--ensemble 8] [--oracle-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from clutune.core.klom import markdown as klom_markdown
from clutune.platform.run.compare import format_table, summary_table

BUDGETS = {"digits": (200, 500), "mnist1d": (500, 1000)}
METHODS = "retrain,ugclu,finetune,er,derpp,ewc,lwf,ga,rl,salun,sfron,scrub"
SEEDS = "100,101,102"
PRESETS = ("agnostic-class", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--out", default=None, help="runs/compare, or runs/compare-m<M> with --ensemble")
    parser.add_argument("--batch", default="all", help="name of this batch of methods")
    parser.add_argument("--tables-only", action="store_true", help="only rebuild the tables from earlier batches")
    parser.add_argument("--presets", default=",".join(PRESETS), help="which of agnostic-class,random")
    parser.add_argument("--budgets", default=None, help="which of the dataset's budgets (default both)")
    parser.add_argument("--ensemble", type=int, default=1, help="oracle members per scored request (KLoM from 2)")
    parser.add_argument("--oracle-cache", default=None, help="oracle.cache_dir for the commands")
    args = parser.parse_args()
    clutune = str(Path(sys.executable).parent / "clutune")
    results = Path("bench/results")
    tag = f"-m{args.ensemble}" if args.ensemble > 1 else ""
    root = Path(args.out or f"runs/compare{tag}")
    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else BUDGETS[args.dataset]
    extra = [f"oracle.ensemble={args.ensemble}"] if args.ensemble > 1 else []
    extra += [f"oracle.cache_dir={args.oracle_cache}"] if args.oracle_cache else []
    for preset in (f"{args.dataset}-{p}" for p in args.presets.split(",")):
        for budget in budgets:
            base = f"{preset}-b{budget}"
            out = root / f"{base}-{args.batch}"
            cmd = _command(preset, out, args.methods, budget, extra, root)
            if not args.tables_only:
                print("clutune " + " ".join(cmd), flush=True)
                t0 = time.perf_counter()
                subprocess.run([clutune, *cmd], check=True, stdout=subprocess.DEVNULL)
                (out / "wall_seconds.json").write_text(json.dumps({"wall_seconds": time.perf_counter() - t0}))
            batches = [p.parent for p in sorted(root.glob(f"{base}-*/results.parquet"))]
            rows = pd.concat([pd.read_parquet(b / "results.parquet") for b in batches], ignore_index=True)
            kept = results / "klom-runs" / f"{base}{tag}" if tag else results / "compare-runs" / base
            kept.mkdir(parents=True, exist_ok=True)
            rows.to_parquet(kept / "results.parquet", index=False, **({"compression": "zstd"} if tag else {}))
            table = format_table(summary_table(rows))
            if tag:
                per_request = pd.concat([pd.read_csv(b / "klom.csv") for b in batches], ignore_index=True)
                per_request.to_csv(kept / "klom.csv.gz", index=False)
                pooled = pd.concat([pd.read_csv(b / "klom_summary.csv") for b in batches], ignore_index=True)
                table += "\n\n" + klom_markdown(pooled.sort_values(["split", "klom_mean"], kind="stable"))
                table += "\n" + _floor_table(rows)
            commands = "\n".join(
                f"`clutune {' '.join(_command(preset, b, _methods(b), budget, extra, root))}`{_wall(b)}"
                for b in batches
            )
            header = (
                f"{commands}\n\n{preset}, buffer {budget} for every replaying method, over seeds {SEEDS}, "
                "each run's mean over its requests.\n\n"
            )
            (results / f"compare{tag}-{base}.md").write_text(header + table + "\n")
            print(table, flush=True)


def _command(preset: str, out: Path, methods: str, budget: int, extra: list[str], root: Path) -> list[str]:
    cmd = ["compare", "--config", preset, "--methods", methods, "--seeds", SEEDS, "--out", str(out)]
    cmd += ["--set", f"buffer_size={budget}", *(a for e in extra for a in ("--set", e)), "--overwrite"]
    return [*cmd, "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]


def _methods(folder: Path) -> str:
    return ",".join(pd.read_parquet(folder / "results.parquet")["method"].unique())


def _wall(folder: Path) -> str:
    timing = folder / "wall_seconds.json"
    return f" ({json.loads(timing.read_text())['wall_seconds']:.0f} s wall)" if timing.exists() else ""


def _floor_table(rows: pd.DataFrame) -> str:
    """The oracle floor of each scored request (the same for every method: one set of members), with the range
    that holds 95% of the member pairs."""
    scored = rows[rows["oracle_floor"].notna()].drop_duplicates("request").sort_values("request")
    lines = [
        "oracle_floor: the mean KL between two oracle members of a scored request [2.5th, 97.5th percentile over "
        "the member pairs]; kl_over_floor (above) is each method's mean KL to a member over it.",
        "",
        "| request | kind | oracle_floor |",
        "|---|---|---|",
        *(
            f"| {r.request} | {r.kind} | {r.oracle_floor:.4g} [{r.oracle_floor_lo:.4g}, {r.oracle_floor_hi:.4g}] |"
            for r in scored.itertuples()
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
