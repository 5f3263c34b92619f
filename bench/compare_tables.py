"""README's comparison tables: every method at equal memory, on fresh seeds, with its tuned defaults.

For each preset of a dataset (agnostic-class and random) and each of the dataset's two memory budgets, runs
`clutune compare` over all methods (exact retrain included, as the noise floor) on the confirmation seeds
100, 101, 102 (never used for tuning), with `--set buffer_size=B` so every replaying method keeps the same
number of samples. Writes bench/results/compare-<preset>-b<B>.md, prints the exact commands, and keeps every run's
rows in bench/results/compare-runs/<preset>-b<B>/results.parquet (all batches together), the folders that
`clutune aggregate bench/results/compare-runs/*` summarises across scenarios.

Methods can be run in batches (`--batch NAME --methods ...`, each its own `clutune compare` folder on the same
cached oracles); every run of the script rebuilds the tables from all batches found.

Usage: python bench/compare_tables.py --dataset digits|mnist1d [--methods ...] [--batch NAME] [--tables-only]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from clutune.platform.run.compare import format_table, summary_table

BUDGETS = {"digits": (200, 500), "mnist1d": (500, 1000)}
METHODS = "retrain,ugclu,finetune,er,derpp,ewc,lwf,ga,rl,salun,sfron,scrub"
SEEDS = "100,101,102"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--batch", default="all", help="name of this batch of methods")
    parser.add_argument("--tables-only", action="store_true", help="only rebuild the tables from earlier batches")
    args = parser.parse_args()
    clutune = str(Path(sys.executable).parent / "clutune")
    results = Path("bench/results")
    for preset in (f"{args.dataset}-agnostic-class", f"{args.dataset}-random"):
        for budget in BUDGETS[args.dataset]:
            base = f"{preset}-b{budget}"
            out = Path(args.out) / f"{base}-{args.batch}"
            cmd = ["compare", "--config", preset, "--methods", args.methods, "--seeds", SEEDS, "--out", str(out)]
            cmd += ["--set", f"buffer_size={budget}", "--overwrite", "--tracking-uri"]
            cmd += [f"sqlite:///{(Path(args.out) / 'mlflow.db').resolve()}"]
            if not args.tables_only:
                print("clutune " + " ".join(cmd), flush=True)
                subprocess.run([clutune, *cmd], check=True, stdout=subprocess.DEVNULL)
            batches = sorted(Path(args.out).glob(f"{base}-*/results.parquet"))
            rows = pd.concat([pd.read_parquet(p) for p in batches], ignore_index=True)
            (results / "compare-runs" / base).mkdir(parents=True, exist_ok=True)
            rows.to_parquet(results / "compare-runs" / base / "results.parquet", index=False)
            table = format_table(summary_table(rows))
            commands = "\n".join(f"`clutune {_command(preset, p.parent, budget)}`" for p in batches)
            header = (
                f"{commands}\n\n{preset}, buffer {budget} for every replaying method, over seeds {SEEDS}, "
                "each run's mean over its requests.\n\n"
            )
            (results / f"compare-{base}.md").write_text(header + table + "\n")
            print(table, flush=True)


def _command(preset: str, folder: Path, budget: int) -> str:
    methods = ",".join(pd.read_parquet(folder / "results.parquet")["method"].unique())
    return (
        f"compare --config {preset} --methods {methods} --seeds {SEEDS} --out {folder} "
        f"--set buffer_size={budget} --overwrite --tracking-uri sqlite:///runs/compare/mlflow.db"
    )


if __name__ == "__main__":
    main()
