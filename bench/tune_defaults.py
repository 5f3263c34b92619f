"""Equal tuning budget: the same `clutune sweep` for every method, best trial written to configs/best.

Each method gets --trials TPE trials (seed 0, ASHA at request boundaries) on the given preset, minimising the
request-mean kl_oracle_all, starting from its current defaults; the best complete trial's hyperparameters are
merged into configs/best/<method>-<dataset>.yaml and a table goes to bench/results/tuning-<dataset>.md.

Usage: python bench/tune_defaults.py [--config digits-agnostic-class] [--trials 40] [--methods er,derpp,...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

from clutune.cli import set_ray_env
from clutune.config import BEST_DIR, load_config

DEFAULT_METHODS = "finetune,er,derpp,ewc,lwf,ga,rl,salun,sfron,scrub"


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="digits-agnostic-class")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    args = parser.parse_args()
    set_ray_env()
    from clutune.platform.sweep import run_sweep

    dataset = load_config(args.config).dataset.name
    lines = ["| method | trials | best request-mean kl_oracle_all | best hyperparameters |", "|---|---|---|---|"]
    out = Path(f"bench/results/tuning-{dataset}.md")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            summary = run_sweep(
                args.config,
                method,
                args.trials,
                sets=[f"sweep.storage_path={tmp}/sweeps", "device=cpu"],
                concurrency=args.concurrency,
                tracking_uri=f"sqlite:///{Path('runs/tuning/mlflow.db').resolve()}",
                log=lambda *a, **k: None,
            )
            if not summary.best:
                lines.append(f"| {method} | {args.trials} | no trial completed | |")
                continue
            params = {k: _plain(v) for k, v in summary.best["best_params"].items()}
            path = BEST_DIR / f"{method}-{dataset}.yaml"
            current = yaml.safe_load(path.read_text()) if path.exists() else {}
            header = [line for line in path.read_text().splitlines() if line.startswith("#")] if path.exists() else []
            header.append(f"# Tuned by bench/tune_defaults.py: {args.trials} TPE trials on {args.config}.")
            path.write_text("\n".join(header) + "\n" + yaml.safe_dump({**current, **params}, sort_keys=False))
            kl = summary.best["best_metrics"]["mean_kl_oracle_all"]
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
            line = f"| {method} | {args.trials} | {kl:.4f} | {shown} |"
            print(line, flush=True)
            lines.append(line)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
