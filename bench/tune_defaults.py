"""One tuning procedure for every method: the same `clutune sweep`, budget and pick rule, confirmed on fresh seeds.

For each dataset and method, ugclu included:
- a sweep on `<dataset>-agnostic-class` over `clutune/search_spaces/<method>.yaml` with the replay buffer fixed at
  the dataset's first memory budget (memory is the budget of a comparison, not a knob);
- multi-seed trials (`sweep.seeds`), each objective robust (`sweep.robust`: mean + kappa x std over seeds), the
  penalty-free objective pair [kl_oracle_all, avg_gap], ASHA at request boundaries on the first;
- one point of the Pareto front picked by the sweep's documented rule (the smallest sum of value / best value on
  the front), then re-run on the confirmation seeds, never used for tuning;
- the convergence rule: each method's sweep runs until its convergence verdict says converged (the last quarter
  of its complete trials improved the hypervolume by no more than `sweep.converged_tolerance`, checked from
  `--min-trials` complete trials on) or until the cap `--trials`, the same cap for every method. The trials
  spent and the verdict are the `trials` and `converged` columns of the table.

Winners go to clutune/presets/best/<method>-<dataset>.yaml; tuned and confirmed values to
bench/results/tuning-<dataset>.md and .json. A method already in the .json is skipped, so an interrupted run
continues where it stopped.

Usage: python bench/tune_defaults.py --dataset digits [--trials 60] [--min-trials 20] [--seeds 0,1]
       [--methods ugclu,er,...] [--sampler gp] [--out bench/results] [--no-write-best] [--set key=value ...]
       [--space bench/spaces/ugclu-wide.yaml]  (one method: a space other than its shipped one)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import fields
from pathlib import Path

import pandas as pd
import yaml

import clutune
from clutune.clu.methods import get_method
from clutune.platform.search.convergence import CSV, verdict

METHODS = "ugclu,finetune,er,derpp,ewc,lwf,ga,rl,salun,sfron,scrub"
BUDGETS = {"digits": (200, 500), "mnist1d": (500, 1000)}  # replay buffer sizes compared; tuning uses the first
OBJECTIVES = ["kl_oracle_all", "avg_gap"]
CONFIRM_SEEDS = [100, 101, 102]
KAPPA = 1.0
# The tuned defaults in this source tree (never an installed copy of the package): winners are committed there.
BEST_DIR = Path(__file__).resolve().parents[1] / "clutune" / "presets" / "best"


def _has(method: str, key: str) -> bool:
    return key in {f.name for f in fields(get_method(method).Hparams)}


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_best(method: str, dataset: str, params: dict, budget: int | None, note: str) -> None:
    path = BEST_DIR / f"{method}-{dataset}.yaml"
    current = yaml.safe_load(path.read_text()) if path.exists() else {}
    current = current or {}
    if budget is not None:
        current["buffer_size"] = budget
    current.update(params)
    path.write_text(f"# {note}\n" + yaml.safe_dump(current, sort_keys=False))


def table(records: dict[str, dict]) -> str:
    head = "| method | trials | converged | tuned kl_oracle_all | tuned avg_gap | confirmed kl_oracle_all |"
    lines = [head + " confirmed avg_gap | flag | picked |", "|---|---|---|---|---|---|---|---|---|"]
    for method, r in records.items():
        flag = "worse than tuned" if r["worse_than_tuned"] else "ok"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in r["params"].items())
        converged = {True: "yes", False: "no"}.get(r.get("converged"), "not checked")
        lines.append(
            f"| {method} | {r['trials']} | {converged} | {r['tuned_kl_oracle_all']:.4g} | {r['tuned_avg_gap']:.4g} | "
            f"{r['confirmed_mean_kl_oracle_all']:.4g} ± {r['confirmed_std_kl_oracle_all']:.2g} | "
            f"{r['confirmed_mean_avg_gap']:.4g} ± {r['confirmed_std_avg_gap']:.2g} | {flag} | {params} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--trials", type=int, default=60, help="the cap: at most this many trials per method")
    parser.add_argument("--min-trials", type=int, default=20, help="complete trials before the verdict may stop")
    parser.add_argument("--tolerance", type=float, default=0.01, help="sweep.converged_tolerance")
    parser.add_argument("--sampler", default="gp", help="sweep.sampler (the sampler study's choice)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--out", default="bench/results", help="folder of tuning-<dataset>.md and .json")
    parser.add_argument("--no-write-best", action="store_true", help="keep the tuned defaults (a smoke run)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra config overrides")
    parser.add_argument("--space", help="a search space file instead of the method's shipped one (one method)")
    args = parser.parse_args()
    if args.space and "," in args.methods:
        parser.error("--space is one method's space: give --methods with one method")
    preset = f"{args.dataset}-agnostic-class"
    budget = BUDGETS[args.dataset][0]
    seeds = [int(s) for s in args.seeds.split(",")]
    state_path = Path(args.out) / f"tuning-{args.dataset}.json"
    records = json.loads(state_path.read_text()) if state_path.exists() else {}
    for method in args.methods.split(","):
        if method in records:
            continue
        start = BEST_DIR / f"{method}-{args.dataset}.yaml"
        digits = BEST_DIR / f"{method}-digits.yaml"
        if (
            not start.exists() and digits.exists() and not args.no_write_best
        ):  # start from the digits values rather than the CIFAR defaults
            start.write_text("# Carried over from digits as the sweep's starting point.\n" + digits.read_text())
        sets = [
            f"sweep.seeds={seeds}",
            f"sweep.robust={KAPPA}",
            f"sweep.objectives={OBJECTIVES}",
            f"sweep.confirm_seeds={CONFIRM_SEEDS}",
            f"sweep.experiment=tuning-{args.dataset}",
            f"sweep.sampler={args.sampler}",
            "sweep.stop_converged=true",
            f"sweep.min_trials={args.min_trials}",
            f"sweep.converged_tolerance={args.tolerance}",
            "device=cpu",
            *args.sets,
        ]
        if _has(method, "buffer_size"):
            sets.append(f"buffer_size={budget}")
        with tempfile.TemporaryDirectory() as tmp:
            summary = clutune.sweep(
                preset,
                method=method,
                trials=args.trials,
                space=args.space,
                overrides=[*sets, f"sweep.storage_path={tmp}/sweeps"],
                concurrency=args.concurrency,
                tracking_uri=f"sqlite:///{Path('runs/tuning/mlflow.db').resolve()}",
                log=lambda *a, **k: None,
            )
            curve = pd.read_csv(summary.sweep_dir / CSV)
            converged, _, line = verdict(curve["hypervolume"].to_numpy(dtype=float), "hypervolume", args.tolerance)
        print(f"{method}: {len(summary.trials)} trials; {line}", flush=True)
        if summary.confirmed is None or summary.confirmed.empty:
            print(f"{method}: no trial completed every request", flush=True)
            continue
        confirmed = summary.confirmed.iloc[0].to_dict()
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in summary.best["best_params"].items()}
        records[method] = {
            **{k: (v.item() if hasattr(v, "item") else v) for k, v in confirmed.items()},
            "params": params,
            "trials": len(summary.trials),
            "cap": args.trials,
            "converged": converged,
            "sampler": args.sampler,
            "seeds": seeds,
        }
        spent = f"{len(summary.trials)} {args.sampler} trials ({'converged' if converged else 'cap'} of {args.trials})"
        note = (
            f"Tuned by bench/tune_defaults.py: {spent} x seeds {seeds} on {preset}, objectives "
            f"{OBJECTIVES} as mean + {KAPPA} x std, buffer {budget}; picked by the sweep's rule, confirmed on "
            f"seeds {CONFIRM_SEEDS}."
        )
        if not args.no_write_best:
            write_best(method, args.dataset, params, budget if _has(method, "buffer_size") else None, note)
        print(f"{method}: {json.dumps(records[method])}", flush=True)
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(records, indent=1))
        where = f" in the search space {args.space}" if args.space else ""
        (Path(args.out) / f"tuning-{args.dataset}.md").write_text(
            f"Tuning on {preset}{where}: each method until its sweep converged (hypervolume gain of the last quarter "
            f"of trials <= {args.tolerance:g}, checked from {args.min_trials} complete trials on) or {args.trials} "
            f"trials, x {len(seeds)} seeds per trial, {args.sampler} sampler, buffer {budget}, objectives "
            f"{OBJECTIVES} (mean + {KAPPA} x std), confirmed on seeds {CONFIRM_SEEDS} (mean ± std). `trials`: "
            "trials spent; `converged`: the verdict at the end.\n\n" + table(records)
        )


if __name__ == "__main__":
    main()
