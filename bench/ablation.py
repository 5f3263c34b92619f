"""What each UG-CLU component contributes: the shipped defaults with one component switched off.

Runs on both presets of a dataset (agnostic-class and random) with the replay buffer at the dataset's first
memory budget, on the confirmation seeds (never used for tuning).

Usage: python bench/ablation.py [--dataset digits] [--seeds 100,101,102] [--out bench/results/ablation-digits.md]
Prints (and writes) a markdown table of kl_oracle_all, avg_gap and the largest unlearn gap, mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict

import numpy as np
import torch
from table import write_table

from clutune.core.config import load_config
from clutune.core.experiment import method_hparams, prepare, run_experiment

# Components switched off; a switch the tuned defaults already have off is switched on instead (its row then says
# what the tuning gave up), so no row repeats the defaults.
OFF = [
    ("no ascent", "alpha0_unlearn", 0.0),
    ("mask", "use_mask", False),
    ("no slow steps", "K_in", 0),
    ("uniform coefficients", "lam", 0.0),
    ("decay", "decay", False),
]


def variants(defaults: dict) -> dict[str, dict]:
    """The tuned defaults first, then one row per component with that one value changed."""
    rows: dict[str, dict] = {"UG-CLU (tuned defaults)": {}}
    for name, key, value in OFF:
        if isinstance(value, bool):
            value = not value if defaults[key] is value else value
            rows[f"{name} {'on' if value else 'off'} ({key}={str(value).lower()})"] = {key: value}
        else:
            rows[f"{name} ({key}={value:g})"] = {key: value}
    return rows


BUDGET = {"digits": 200, "mnist1d": 500}  # the first memory budget of the comparison tables


def _stat(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=sorted(BUDGET), default="digits")
    parser.add_argument("--seeds", default="100,101,102")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = args.out or f"bench/results/ablation-{args.dataset}.md"
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        "| variant | preset | kl_oracle_all | avg_gap | max gap_unlearn |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as cache:
        for preset in (f"{args.dataset}-agnostic-class", f"{args.dataset}-random"):
            config = load_config(preset, [f"oracle.cache_dir={cache}", "device=cpu"])
            prep = prepare(config)
            tuned = asdict(method_hparams(config, "ugclu", args.dataset, {"buffer_size": BUDGET[args.dataset]}))
            for name, over in variants(tuned).items():
                kl, gap, gu = [], [], []
                for seed in seeds:
                    try:
                        budget = {"buffer_size": BUDGET[args.dataset], **over}
                        hp = method_hparams(config, "ugclu", args.dataset, budget)
                        rows = run_experiment(prep, "ugclu", hp, seed)
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
    write_table(lines, out)


if __name__ == "__main__":
    main()
