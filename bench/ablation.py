"""What each UG-CLU component contributes on digits: the shipped defaults with one component switched off.

Usage: python bench/ablation.py [--seeds 0,1,2] [--out bench/results/ablation-digits.md]
Prints (and writes) a markdown table of kl_oracle_all, avg_gap and the largest unlearn gap, mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from table import write_table

from clutune.config import load_config
from clutune.experiment import method_hparams, prepare, run_experiment

VARIANTS = {
    "UG-CLU (digits defaults)": {},
    "mask off (use_mask=false)": {"use_mask": False},
    "no slow steps (K_in=0)": {"K_in": 0},
    "uniform coefficients (lam=0)": {"lam": 0.0},
    "no decay (decay=false)": {"decay": False},
}
PRESETS = ("digits-agnostic-class", "digits-random")


def _stat(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="bench/results/ablation-digits.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        "| variant | preset | kl_oracle_all | avg_gap | max gap_unlearn |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as cache:
        for preset in PRESETS:
            config = load_config(preset, [f"oracle.cache_dir={cache}", "device=cpu"])
            prep = prepare(config)
            for name, over in VARIANTS.items():
                kl, gap, gu = [], [], []
                for seed in seeds:
                    try:
                        rows = run_experiment(prep, "ugclu", method_hparams(config, "ugclu", "digits", over), seed)
                    except RuntimeError as e:  # a diverged variant is a result too
                        print(f"{preset} {name} seed {seed}: {e}")
                        kl.append(float("inf"))
                        continue
                    kl.append(float(np.mean([r["kl_oracle_all"] for r in rows])))
                    gap.append(float(np.mean([r["avg_gap"] for r in rows])))
                    gu.append(max(r["gap_unlearn"] for r in rows if r["kind"] == "unlearn"))
                line = f"| {name} | {preset} | {_stat(kl)} | {_stat(gap)} | {_stat(gu)} |"
                print(line, flush=True)
                lines.append(line)
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
