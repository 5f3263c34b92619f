"""README's comparison tables: every method at equal memory, on fresh seeds, with its tuned defaults.

For each preset of a dataset (agnostic-class and random) and each of the dataset's two memory budgets, runs
`clutune compare` over all methods (exact retrain included, as the noise floor) on the confirmation seeds
100, 101, 102 (never used for tuning), with `--set buffer_size=B` so every replaying method keeps the same
number of samples. Writes bench/results/compare-<preset>-b<B>.md and prints the exact commands.

Usage: python bench/compare_tables.py --dataset digits|mnist1d [--methods ...] [--out runs/compare]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BUDGETS = {"digits": (200, 500), "mnist1d": (500, 1000)}
METHODS = "retrain,ugclu,finetune,er,derpp,ewc,lwf,ga,rl,salun,sfron,scrub"
SEEDS = "100,101,102"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--out", default="runs/compare")
    args = parser.parse_args()
    clutune = str(Path(sys.executable).parent / "clutune")
    results = Path("bench/results")
    for preset in (f"{args.dataset}-agnostic-class", f"{args.dataset}-random"):
        for budget in BUDGETS[args.dataset]:
            out = Path(args.out) / f"{preset}-b{budget}"
            cmd = ["compare", "--config", preset, "--methods", args.methods, "--seeds", SEEDS, "--out", str(out)]
            cmd += ["--set", f"buffer_size={budget}", "--overwrite", "--tracking-uri"]
            cmd += [f"sqlite:///{(Path(args.out) / 'mlflow.db').resolve()}"]
            print("clutune " + " ".join(cmd), flush=True)
            subprocess.run([clutune, *cmd], check=True, stdout=subprocess.DEVNULL)
            table = (out / "comparison.md").read_text()
            header = (
                f"`clutune {' '.join(cmd[:-1])} sqlite:///runs/compare/mlflow.db`\n\n"
                f"{preset}, buffer {budget} for every replaying method, mean ± std over seeds {SEEDS} of each "
                "run's request mean.\n\n"
            )
            (results / f"compare-{preset}-b{budget}.md").write_text(header + table)
            print(table, flush=True)


if __name__ == "__main__":
    main()
