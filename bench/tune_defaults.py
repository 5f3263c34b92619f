"""One tuning procedure for every method: the same `clutune sweep`, budget and pick rule, confirmed on fresh seeds.

For each dataset and method, ugclu included:
- a sweep on `<dataset>-agnostic-class` over `clutune/search_spaces/<method>.yaml` with the replay buffer fixed at
  the dataset's first memory budget (memory is the budget of a comparison, not a knob);
- multi-seed trials (`sweep.seeds`), each objective robust (`sweep.robust`: mean + kappa x std over seeds), the
  penalty-free objective pair [kl_oracle_all, avg_gap], ASHA at request boundaries on the first;
- one point of the Pareto front picked by `--pick` (`sweep.pick`; by default `first`: the best kl_oracle_all on
  the front, so the headline metric is never traded for another), then re-run on the confirmation seeds, never
  used for tuning, together with a neighbour of it (every value moved inward, `sweep.stability_step`): a pick
  whose runs diverge gives way to the next front member that never did, and the record says so;
- the record puts, on every objective, the tuned-seed value beside the fresh-seed one (mean and 95% interval)
  and the optimism (fresh minus tuned); values on a bound of the space are flagged;
- the convergence rule: each method's sweep runs until its convergence verdict says converged (the last quarter
  of its complete trials improved the hypervolume by no more than `sweep.converged_tolerance`, with at least
  `--min-trials` complete trials) or until the cap `--trials`, the same cap for every method. The trials
  spent and the verdict are the `trials` and `converged` columns of the table; each sweep's trials.csv and
  convergence.csv are kept in bench/results/tuning-<dataset>-history/<method>/, so the verdict can be rechecked.

Winners go to clutune/presets/best/<method>-<dataset>.yaml; tuned and confirmed values to
bench/results/tuning-<dataset>.md and .json. A method already in the .json is skipped, so an interrupted run
continues where it stopped.

Usage: python bench/tune_defaults.py --dataset digits [--trials 60] [--min-trials 20] [--seeds 0,1] [--pick first]
       [--methods ugclu,er,...] [--sampler gp] [--out bench/results] [--no-write-best] [--set key=value ...]
       [--space bench/spaces/ugclu-wide.yaml]  (one method: a space other than its shipped one)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

import yaml

import clutune
from clutune.clu.methods import get_method
from clutune.platform.search.convergence import CSV

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
    """Per method: search effort and verdict, then on each objective the pick's tuned value, its fresh-seed mean
    with the 95% interval and the optimism (fresh minus tuned), then the stability check and the bound flags."""
    head = ["method", "trials", "converged", "pick"]
    for m in OBJECTIVES:
        head += [f"tuned {m}", f"fresh {m} [95%]", f"optimism {m}"]
    head += ["diverged runs", "on a bound", "flag", "picked"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, r in records.items():
        flag = "worse than tuned" if r["worse_than_tuned"] else "ok"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in r["params"].items())
        converged = {True: "yes", False: "no"}.get(r.get("converged"), "not checked")
        cells = [method, str(r["trials"]), converged, r.get("pick", "knee (before the pick was a setting)")]
        for m in OBJECTIVES:
            fresh = f"{r[f'confirmed_mean_{m}']:.4g}"
            if f"confirmed_lo_{m}" in r:
                fresh += f" [{r[f'confirmed_lo_{m}']:.4g}, {r[f'confirmed_hi_{m}']:.4g}]"
            else:
                fresh += f" ± {r[f'confirmed_std_{m}']:.2g} (sd)"
            optimism = r.get(f"optimism_{m}", r[f"confirmed_{m}"] - r[f"tuned_{m}"])
            cells += [f"{r[f'tuned_{m}']:.4g}", fresh, f"{optimism:+.3g}"]
        runs = f"{r['diverged_runs']} of {r['stability_runs']}" if "stability_runs" in r else "not checked"
        cells += [runs, r.get("on_bound") or "none", flag, params]
        lines.append("| " + " | ".join(cells) + " |")
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
    parser.add_argument("--pick", default="first", choices=["first", "knee"], help="sweep.pick on the front")
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
            f"sweep.pick={args.pick}",
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
            history = Path(args.out) / f"tuning-{args.dataset}-history" / method
            history.mkdir(parents=True, exist_ok=True)
            for name in ("trials.csv", CSV, "confirmed.csv"):
                if (summary.sweep_dir / name).exists():
                    shutil.copy(summary.sweep_dir / name, history / name)
            converged, line = summary.converged, summary.verdict
        print(f"{method}: {len(summary.trials)} trials; {line}", flush=True)
        if summary.confirmed is None or summary.confirmed.empty:
            print(f"{method}: no trial completed every request", flush=True)
            continue
        picked = summary.confirmed[summary.confirmed["picked"]] if "picked" in summary.confirmed else summary.confirmed
        confirmed = picked.iloc[0].to_dict()
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in summary.best["best_params"].items()}
        records[method] = {
            **{k: (v.item() if hasattr(v, "item") else v) for k, v in confirmed.items()},
            "params": params,
            "trials": len(summary.trials),
            "cap": args.trials,
            "converged": converged,
            "sampler": args.sampler,
            "seeds": seeds,
            "pick": f"{args.pick}",
            "stability_seeds": CONFIRM_SEEDS,
        }
        spent = f"{len(summary.trials)} {args.sampler} trials ({'converged' if converged else 'cap'} of {args.trials})"
        note = (
            f"Tuned by bench/tune_defaults.py: {spent} x seeds {seeds} on {preset}, objectives "
            f"{OBJECTIVES} as mean + {KAPPA} x std, buffer {budget}; pick: {args.pick}; confirmed on "
            f"seeds {CONFIRM_SEEDS} with a neighbour ({confirmed.get('diverged_runs', 0)} of "
            f"{confirmed.get('stability_runs', 0)} runs diverged)."
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
            f"{OBJECTIVES} (mean + {KAPPA} x std), pick: {args.pick}, confirmed on seeds {CONFIRM_SEEDS} with a "
            "neighbour of the pick (mean and 95% t-interval; optimism = fresh minus tuned, the same statistic). "
            "`trials`: trials spent; `converged`: the verdict at the end; `diverged runs`: of the pick's and its "
            "neighbour's confirmation runs. Each sweep's trials.csv and convergence.csv: "
            f"tuning-{args.dataset}-history/.\n\n" + table(records)
        )


if __name__ == "__main__":
    main()
