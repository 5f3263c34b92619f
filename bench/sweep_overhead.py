"""What the platform costs: the same trials through `clutune sweep` and through a plain Python loop, one run.

The sweep runs first (random sampler, ASHA off, oracles already cached); the loop then runs exactly the
hyperparameters the sweep's trials drew, in-process, one after another. Reported: wall seconds of each and
their ratio (sweep / loop), per sweep concurrency. Nothing is asserted: this machine is noisy; the ratio is what
counts.

Usage: python bench/sweep_overhead.py [--config mnist1d-agnostic-class] [--trials 8] [--concurrency 1,2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch
from table import write_table

from clutune.cli import set_ray_env
from clutune.config import load_config
from clutune.experiment import method_hparams, oracle_for, prepare, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="mnist1d-agnostic-class")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--concurrency", default="1,2")
    parser.add_argument("--out", default="bench/results/sweep_overhead.md")
    args = parser.parse_args()
    set_ray_env()
    import ray

    from clutune.platform.sweep import run_sweep

    lines = [
        f"config {args.config}, method ugclu, {args.trials} trials, {os.cpu_count()} CPUs, {platform.processor()}",
        "",
        "| concurrency | sweep wall (s) | plain loop wall (s) | sweep / loop |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        sets = [f"oracle.cache_dir={tmp}/oracles", "sweep.asha=false", "sweep.sampler=random", "device=cpu"]
        config = load_config(args.config, sets)
        prep = prepare(config)
        for k in range(len(prep.scenario)):  # both paths start from a warm oracle cache
            oracle_for(prep, k)
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            run_sets = [*sets, f"sweep.storage_path={tmp}/sweeps-{concurrency}"]
            t0 = time.perf_counter()
            summary = run_sweep(
                args.config,
                "ugclu",
                args.trials,
                sets=run_sets,
                concurrency=concurrency,
                tracking_uri=f"sqlite:///{tmp}/mlflow-{concurrency}.db",
                num_cpus=2,
                log=lambda *a, **k: None,
            )
            ray.shutdown()
            sweep_wall = time.perf_counter() - t0
            keys = [c for c in summary.trials.columns if c not in ("trial_id", "status", "requests_done")]
            keys = [c for c in keys if not c.startswith("mean_")]
            torch.set_num_threads(1)
            t0 = time.perf_counter()
            for _, row in summary.trials.iterrows():
                params = {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in keys}
                run_experiment(prep, "ugclu", method_hparams(config, "ugclu", config.dataset.name, params), 0)
            loop_wall = time.perf_counter() - t0
            line = f"| {concurrency} | {sweep_wall:.1f} | {loop_wall:.1f} | {sweep_wall / loop_wall:.2f} |"
            print(line, flush=True)
            lines.append(line)
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
