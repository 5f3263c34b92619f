"""``clutune compare``: several methods on the same scenario, seeds and oracles, as parallel Ray tasks.

Every (method, seed) run is one Ray task; all of them read the same oracle outputs from the object store, so
the oracles are trained once however many methods and seeds there are. The table aggregates each run over its
requests first, then reports mean ± std over seeds.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray

from clutune.clu.methods import get_method
from clutune.config import Config, bare_overrides, load_config
from clutune.errors import UserError
from clutune.experiment import ExperimentRun, build_method, method_hparams, prepare, validate_methods_section
from clutune.platform.oracle_pool import plan_oracles, submit_oracles
from clutune.platform.sweep import absolutize, ensure_ray
from clutune.results import check_out_dir, write_results
from clutune.typed import from_dict

TABLE_METRICS = (
    "kl_oracle_all",
    "kl_oracle_unlearn",
    "avg_gap",
    "gap_remain",
    "gap_unlearn",
    "gap_test",
    "mia_member_rate",
    "mia_efficacy",
    "acc_remain",
    "acc_unlearn",
    "acc_test",
    "forgetting",
    "seconds",
    "samples_processed",
)
_print = functools.partial(print, flush=True)


@ray.remote
def _run_task(config: dict[str, Any], method: str, hparams: dict[str, Any], seed: int, refs: list) -> list[dict]:
    cfg = from_dict(Config, config)
    prep = prepare(cfg)
    hp = method_hparams(cfg, method, cfg.dataset.name, hparams)
    return ExperimentRun(prep, method, hp, seed, oracle=lambda k: ray.get(refs[k])).run()


@dataclass
class Comparison:
    rows: pd.DataFrame
    table: pd.DataFrame
    seconds: float


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run: mean over requests (NaN-skipping); then per method: mean and std over seeds."""
    per_run = rows.groupby(["method", "seed"])[list(TABLE_METRICS)].mean().reset_index()
    agg = per_run.groupby("method")[list(TABLE_METRICS)].agg(["mean", "std"])
    order = agg[("kl_oracle_all", "mean")].sort_values().index
    return agg.loc[order]


def format_table(table: pd.DataFrame) -> str:
    def cell(mean: float, std: float) -> str:
        if math.isnan(mean):
            return "nan"
        std = 0.0 if math.isnan(std) else std
        return f"{mean:.4g} ± {std:.2g}"

    header = "| method | " + " | ".join(TABLE_METRICS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_METRICS) + 1)]
    for method, row in table.iterrows():
        cells = [cell(row[(m, "mean")], row[(m, "std")]) for m in TABLE_METRICS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_compare(
    config_path: str,
    methods: list[str],
    seeds: list[int],
    out: Path,
    sets: list[str] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    log: Any = _print,
    overwrite: bool = False,
) -> Comparison:
    t0 = time.perf_counter()
    config = load_config(config_path, sets)
    validate_methods_section(config)
    if not methods or not seeds:
        raise UserError("--methods and --seeds must each name at least one")
    if len(set(methods)) != len(methods):
        raise UserError("--methods lists a method twice")
    bare = bare_overrides(sets)
    for key in bare:
        if not any(_has(m, key) for m in methods):
            raise UserError(f"--set {key}: none of the methods {', '.join(methods)} has a hyperparameter {key!r}")
    absolutize(config)
    prep = prepare(config)
    hparams = {}
    for m in methods:
        hp = method_hparams(config, m, config.dataset.name, {k: v for k, v in bare.items() if _has(m, k)})
        build_method(prep, m, hp, seeds[0])  # refuses a scenario the method cannot serve (clpu), before any work
        hparams[m] = {k: v for k, v in bare.items() if _has(m, k)}
    check_out_dir(out, overwrite)

    ensure_ray(address, num_cpus)
    plan = plan_oracles(prep)
    log(f"oracles: {len(plan.owned)} distinct, {len(plan.cached)} cached, training {len(plan.missing)} as Ray tasks")
    refs = submit_oracles(prep, plan)
    per_request = [refs[k] for k in plan.key_of_request]
    res = config.sweep.trial_resources
    pending = {}
    for m in methods:
        for s in seeds:
            task = _run_task.options(num_cpus=res.cpu, num_gpus=res.gpu)
            pending[task.remote(config.as_dict(), m, hparams[m], s, per_request)] = (m, s)
    rows: list[dict] = []
    total = len(pending)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        m, s = pending.pop(ready[0])
        run_rows = ray.get(ready[0])
        rows.extend(run_rows)
        write_results(out / "results.parquet", rows)
        kl = np.mean([r["kl_oracle_all"] for r in run_rows])
        log(f"[{total - len(pending)}/{total}] {m} seed {s}: kl_oracle_all {kl:.4g}")
    frame = pd.DataFrame(rows)
    table = summary_table(frame)
    (out / "comparison.md").write_text(format_table(table) + "\n")
    return Comparison(frame, table, time.perf_counter() - t0)


def _has(method: str, key: str) -> bool:
    return key in {f.name for f in fields(get_method(method).Hparams)}


__all__ = ["Comparison", "run_compare", "summary_table", "format_table"]
