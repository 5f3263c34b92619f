"""What each UG-CLU component contributes: the shipped defaults with one component switched off.

Runs on both presets of a dataset (agnostic-class and random) with the replay buffer at the dataset's first
memory budget, on the confirmation seeds (never used for tuning).

Usage: python bench/ablation.py [--dataset digits] [--seeds 100,101,102] [--results bench/results]
Every request's row of every run goes to <results>/ablation-<dataset>/results.parquet (with the command in
run.json beside it); ``rebuild`` derives the markdown table of kl_oracle_all, avg_gap and the largest unlearn gap
(mean ± std over seeds) and its JSON summary from those rows alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
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
DEFAULTS = "UG-CLU (tuned defaults)"


def variants(defaults: dict) -> dict[str, dict]:
    """The tuned defaults first, then one row per component with that one value changed."""
    rows: dict[str, dict] = {DEFAULTS: {}}
    for name, key, value in OFF:
        if isinstance(value, bool):
            value = not value if defaults[key] is value else value
            rows[f"{name} {'on' if value else 'off'} ({key}={str(value).lower()})"] = {key: value}
        else:
            rows[f"{name} ({key}={value:g})"] = {key: value}
    return rows


BUDGET = {"digits": 200, "mnist1d": 500}  # the first memory budget of the comparison tables


def _stat(values: list[float]) -> str:
    lost = int(np.sum(~np.isfinite(values)))
    if lost:
        return f"diverged on {lost} of {len(values)} seeds"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def _summary(values: list[float]) -> dict:
    """Mean, sample std (None where a seed diverged, or for one seed) and count over seeds."""
    finite = bool(np.isfinite(values).all())
    std = float(np.std(values, ddof=1)) if len(values) > 1 and finite else None
    return {"mean": float(np.mean(values)), "std": std, "n": len(values)}


def _paired(variant: pd.DataFrame, defaults: pd.DataFrame) -> dict | None:
    """The variant's KL minus the defaults' on the same seeds: mean and 95% t interval (None where a run of
    either diverged or fewer than two seeds pair up)."""
    both = (
        variant.set_index("seed")["kl"].to_frame("v").join(defaults.set_index("seed")["kl"].to_frame("d"), how="inner")
    )
    diffs = (both["v"] - both["d"]).to_numpy()
    if len(diffs) < 2 or not np.isfinite(diffs).all():
        return None
    half = float(stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs)))
    mean = float(diffs.mean())
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(diffs)}


def per_run(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (preset, variant, seed): the stream means of kl_oracle_all and avg_gap and the largest unlearn
    gap; a diverged run scores an infinite KL and no gaps."""
    out = []
    for (preset, variant, seed), run in rows.groupby(["preset", "variant", "seed"], sort=False):
        if run["diverged"].any():
            out.append({"preset": preset, "variant": variant, "seed": seed, "kl": np.inf, "gap": np.nan, "gu": np.nan})
            continue
        unlearn = run.loc[run["kind"] == "unlearn", "gap_unlearn"]
        out.append(
            {
                "preset": preset,
                "variant": variant,
                "seed": seed,
                "kl": float(run["kl_oracle_all"].mean()),
                "gap": float(run["avg_gap"].mean()),
                "gu": float(unlearn.max()),
            }
        )
    return pd.DataFrame(out)


def rebuild(results: Path, out: Path) -> None:
    """ablation-<dataset>.md and .json from the rows under results/ablation-<dataset>/, for every dataset there."""
    for folder in sorted(results.glob("ablation-*/")):
        if not (folder / "results.parquet").exists():
            continue
        run = json.loads((folder / "run.json").read_text())
        table = per_run(pd.read_parquet(folder / "results.parquet"))
        lines = [
            "| variant | preset | kl_oracle_all | avg_gap | max gap_unlearn |",
            "|---|---|---|---|---|",
        ]
        summary: dict = {"command": run["command"], "seeds": run["seeds"], "presets": {}}
        defaults = {
            preset: group for (preset, variant), group in table.groupby(["preset", "variant"]) if variant == DEFAULTS
        }
        for (preset, variant), group in table.groupby(["preset", "variant"], sort=False):
            cells = {k: group[k].dropna().tolist() for k in ("kl", "gap", "gu")}
            lines.append(
                f"| {variant} | {preset} | {_stat(cells['kl'])} | "
                + " | ".join(_stat(cells[k]) if cells[k] else "diverged" for k in ("gap", "gu"))
                + " |"
            )
            summary["presets"].setdefault(preset, {})[variant] = {
                "kl_oracle_all": _summary(cells["kl"]),
                "kl_vs_defaults": None if variant == DEFAULTS else _paired(group, defaults[preset]),
                **{name: _summary(cells[k]) for name, k in (("avg_gap", "gap"), ("max_gap_unlearn", "gu")) if cells[k]},
            }
        lines += ["", f"Command: `{run['command']}`"]
        out.mkdir(parents=True, exist_ok=True)
        write_table(lines, out / f"{folder.name}.md")
        (out / f"{folder.name}.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=sorted(BUDGET), default="digits")
    parser.add_argument("--seeds", default="100,101,102")
    parser.add_argument("--results", default="bench/results", help="the folder of raw records and derived files")
    args = parser.parse_args()
    results = Path(args.results)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as cache:
        for preset in (f"{args.dataset}-agnostic-class", f"{args.dataset}-random"):
            config = load_config(preset, [f"oracle.cache_dir={cache}", "device=cpu"])
            prep = prepare(config)
            tuned = asdict(method_hparams(config, "ugclu", args.dataset, {"buffer_size": BUDGET[args.dataset]}))
            for name, over in variants(tuned).items():
                for seed in seeds:
                    head = {"preset": preset, "variant": name, "seed": seed}
                    try:
                        hp = method_hparams(
                            config, "ugclu", args.dataset, {"buffer_size": BUDGET[args.dataset], **over}
                        )
                        rows = run_experiment(prep, "ugclu", hp, seed)
                    except RuntimeError as e:  # a diverged variant is a result too
                        print(f"{preset} {name} seed {seed}: {e}", flush=True)
                        records.append({**head, "diverged": True, "error": str(e)})
                        continue
                    records += [{**head, **row, "diverged": False, "error": ""} for row in rows]
                    print(f"{preset} | {name} | seed {seed} | kl {np.mean([r['kl_oracle_all'] for r in rows]):.3f}")
    folder = results / f"ablation-{args.dataset}"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_parquet(folder / "results.parquet", compression="zstd")
    command = shlex.join(["python", "bench/ablation.py", *sys.argv[1:]])
    (folder / "run.json").write_text(json.dumps({"command": command, "seeds": seeds}, indent=1) + "\n")
    rebuild(results, results)


if __name__ == "__main__":
    main()
