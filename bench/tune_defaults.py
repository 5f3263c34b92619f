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
  spent and the verdict are the `trials` and `converged` columns of the table.

Winners go to clutune/presets/best/<method>-<dataset>.yaml. The raw records go to
<out>/tuning-<dataset>/: run.json (the command and its settings) and per method <method>/record.json (the pick,
its tuned and fresh values) beside the sweep's trials.csv.gz, convergence.csv.gz, confirmed.csv.gz and, when
small, its per-request rows (results.parquet), so the verdict and the pick can be rechecked. ``rebuild`` derives
tuning-<dataset>.md and .json (with each method's optimism: fresh minus tuned) from them alone. A method with a
record.json is skipped, so an interrupted run continues where it stopped.

Usage: python bench/tune_defaults.py --dataset digits [--trials 60] [--min-trials 20] [--seeds 0,1] [--pick first]
       [--methods ugclu,er,...] [--sampler gp] [--out bench/results] [--no-write-best] [--set key=value ...]
       [--space bench/spaces/ugclu-wide.yaml]  (one method: a space other than its shipped one)
       python bench/tune_defaults.py --dataset digits --out DIR --apply  (write DIR's recorded picks to the defaults)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

import clutune
from clutune.clu.methods import has_hparam
from clutune.platform.search.convergence import CSV

if TYPE_CHECKING:
    from clutune.platform.search.sweep import SweepResult

METHODS = "ugclu,finetune,er,derpp,ewc,lwf,ga,rl,salun,sfron,scrub"
BUDGETS = {"digits": (200, 500), "mnist1d": (500, 1000)}  # replay buffer sizes compared; tuning uses the first
OBJECTIVES = ["kl_oracle_all", "avg_gap"]
CONFIRM_SEEDS = [100, 101, 102]
KAPPA = 1.0
# The tuned defaults in this source tree (never an installed copy of the package): winners are committed there.
BEST_DIR = Path(__file__).resolve().parents[1] / "clutune" / "presets" / "best"
ROWS_KEPT_BYTES = 5_000_000  # a sweep's per-request rows are kept when their compressed file is at most this


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_best(
    method: str, dataset: str, params: dict, budget: int | None, note: str, best_dir: Path = BEST_DIR
) -> None:
    path = best_dir / f"{method}-{dataset}.yaml"
    current = yaml.safe_load(path.read_text()) if path.exists() else {}
    current = current or {}
    if budget is not None:
        current["buffer_size"] = budget
    current.update(params)
    path.write_text(f"# {note}\n" + yaml.safe_dump(current, sort_keys=False))


def note_of(record: dict, run: dict, preset: str) -> str:
    """The header line of a shipped default: how its search ended and how its pick was confirmed, from the record
    alone, so that a default written now and one written from the committed records later read the same."""
    ended = spent(record["trials"], record["cap"], record["converged"])
    diverged = f"{record.get('diverged_runs', 0)} of {record.get('stability_runs', 0)} runs diverged"
    return (
        f"Tuned by bench/tune_defaults.py: {record['sampler']} search, {ended}, x seeds {record['seeds']} on "
        f"{preset}, objectives {OBJECTIVES} as mean + {KAPPA} x std, buffer {run['budget']}; pick: {record['pick']}; "
        f"confirmed on seeds {record['stability_seeds']} with a neighbour ({diverged})."
    )


def apply(results: Path, dataset: str, best_dir: Path = BEST_DIR) -> list[str]:
    """Write every method's pick under results/tuning-<dataset>/ to the shipped defaults, searching nothing: the
    defaults are derived from the committed records, so a search run with --no-write-best can be reviewed first."""
    folder = results / f"tuning-{dataset}"
    if not (folder / "run.json").exists():
        raise SystemExit(f"error: no tuning records at {folder} (run.json is missing)")
    run = json.loads((folder / "run.json").read_text())
    records = records_of(folder)
    if not records:
        raise SystemExit(f"error: no method's record.json under {folder}")
    for method, record in records.items():
        budget = run["budget"] if has_hparam(method, "buffer_size") else None
        note = note_of(record, run, f"{dataset}-agnostic-class")
        write_best(method, dataset, record["params"], budget, note, best_dir)
    return list(records)


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


def spent(trials: int, cap: int, converged: bool | None) -> str:
    """How a search ended, in words: converged, at the cap, or stopped short of the cap by the rule while the
    trials still running then moved the front, so that the final verdict says not converged."""
    if converged:
        return f"converged at {trials} trials, cap {cap}"
    if trials >= cap:
        return f"{trials} trials, the cap, not converged"
    return (
        f"{trials} trials, stopped by the convergence rule short of the cap of {cap}; the final verdict, over "
        "every complete trial, not converged"
    )


def optimism(record: dict) -> dict[str, float]:
    """Fresh minus tuned on each objective, the same statistic on both (mean + kappa x std over seeds)."""
    return {m: record.get(f"optimism_{m}", record[f"confirmed_{m}"] - record[f"tuned_{m}"]) for m in OBJECTIVES}


def header(run: dict, preset: str) -> str:
    where = f" in the search space {run['space']}" if run.get("space") else ""
    text = (
        f"Tuning on {preset}{where}: each method until its sweep converged (hypervolume gain of the last quarter "
        f"of trials <= {run['tolerance']:g}, checked from {run['min_trials']} complete trials on) or {run['cap']} "
        f"trials, x {len(run['seeds'])} seeds per trial, {run['sampler']} sampler, buffer {run['budget']}, "
        f"objectives {OBJECTIVES} (mean + {KAPPA} x std), pick: {run['pick']}, confirmed on seeds "
        f"{run['confirm_seeds']} (optimism = fresh minus tuned, the same statistic). `trials`: trials spent; "
        "`converged`: the verdict at the end."
    )
    if run.get("note"):
        text += f" {run['note']}"
    return text + f"\n\nCommand: `{run['command']}`\n\n"


def complete_trials(folder: Path) -> int | None:
    """How many of a search's trials ran every request (the only ones its verdict and front count); None where
    the search's history was not kept."""
    curve = folder / f"{CSV}.gz"
    return int(pd.read_csv(curve)["complete"].sum()) if curve.exists() else None


def records_of(folder: Path) -> dict[str, dict]:
    """Each method's record under a tuning folder, in the order of METHODS, then any other."""
    found = {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/record.json")}
    order = [m for m in METHODS.split(",") if m in found] + sorted(set(found) - set(METHODS.split(",")))
    return {m: found[m] for m in order}


def rebuild(results: Path, out: Path) -> None:
    """tuning-<dataset>.md and .json (and .previous.md for the tuning before, where its records are kept) from the
    records under results/tuning-<dataset>/, for each dataset there."""
    for dataset in sorted(BUDGETS):
        folder = results / f"tuning-{dataset}"
        if not (folder / "run.json").exists():
            continue
        run = json.loads((folder / "run.json").read_text())
        records = records_of(folder)
        preset = f"{dataset}-agnostic-class"
        summary = {
            "run": run,
            "methods": {
                m: {
                    **r,
                    "optimism": optimism(r),
                    "histories": (folder / m / "trials.csv.gz").exists(),
                    "complete": complete_trials(folder / m),
                }
                for m, r in records.items()
            },
            "count": len(records),
            "converged": sum(bool(r.get("converged")) for r in records.values()),
            # searches that spent the whole cap without a converged verdict
            "at_cap": sum(not r.get("converged") and r["trials"] >= run["cap"] for r in records.values()),
        }
        previous = folder / "previous.json"
        if previous.exists():
            before = json.loads(previous.read_text())
            summary["previous"] = {m: r["confirmed_mean_kl_oracle_all"] for m, r in before["records"].items()}
            summary["previous_converged"] = sum(bool(r.get("converged")) for r in before["records"].values())
            summary["same_pick_as_previous"] = [
                m
                for m, r in records.items()
                if m in before["records"]
                and all(r["params"].get(k) == v for k, v in before["records"][m]["params"].items())
            ]
            command = f"`{before['command']}`" if before["command"] else "not recorded"
            text = f"{before['note']}\n\nCommand: {command}\n\n" + table(before["records"])
            (out / f"tuning-{dataset}.previous.md").write_text(text)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"tuning-{dataset}.json").write_text(json.dumps(summary, indent=1) + "\n")
        (out / f"tuning-{dataset}.md").write_text(header(run, preset) + table(records))


def keep_records(summary: SweepResult, target: Path) -> None:
    """The sweep's trials, convergence curve, confirmation and (when small) per-request rows, compressed."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("trials.csv", CSV, "confirmed.csv"):
        if (summary.sweep_dir / name).exists():
            pd.read_csv(summary.sweep_dir / name).to_csv(target / f"{name}.gz", index=False)
    rows = summary.sweep_dir / "results.parquet"
    if rows.exists():
        pd.read_parquet(rows).to_parquet(target / "results.parquet", compression="zstd")
        if (target / "results.parquet").stat().st_size > ROWS_KEPT_BYTES:
            (target / "results.parquet").unlink()


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
    parser.add_argument(
        "--apply", action="store_true", help="search nothing: write the picks recorded under --out to the defaults"
    )
    args = parser.parse_args()
    if args.apply:
        written = apply(Path(args.out), args.dataset)
        print(f"wrote {len(written)} defaults to {BEST_DIR}: {', '.join(written)}")
        return
    if args.space and "," in args.methods:
        parser.error("--space is one method's space: give --methods with one method")
    preset = f"{args.dataset}-agnostic-class"
    budget = BUDGETS[args.dataset][0]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    folder = out / f"tuning-{args.dataset}"
    folder.mkdir(parents=True, exist_ok=True)
    run = {
        "command": shlex.join(["python", "bench/tune_defaults.py", *sys.argv[1:]]),
        "cap": args.trials,
        "min_trials": args.min_trials,
        "tolerance": args.tolerance,
        "sampler": args.sampler,
        "seeds": seeds,
        "budget": budget,
        "pick": args.pick,
        "confirm_seeds": CONFIRM_SEEDS,
        "space": args.space,
    }
    (folder / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    for method in args.methods.split(","):
        if (folder / method / "record.json").exists():
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
        if has_hparam(method, "buffer_size"):
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
            keep_records(summary, folder / method)
            converged, line = summary.converged, summary.verdict
        print(f"{method}: {len(summary.trials)} trials; {line}", flush=True)
        if summary.confirmed is None or summary.confirmed.empty:
            print(f"{method}: no trial completed every request", flush=True)
            continue
        picked = summary.confirmed[summary.confirmed["picked"]] if "picked" in summary.confirmed else summary.confirmed
        confirmed = picked.iloc[0].to_dict()
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in summary.best["best_params"].items()}
        record = {
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
        if not args.no_write_best:
            note = note_of(record, run, preset)
            write_best(method, args.dataset, params, budget if has_hparam(method, "buffer_size") else None, note)
        print(f"{method}: {json.dumps(record)}", flush=True)
        (folder / method / "record.json").write_text(json.dumps(record, indent=1) + "\n")
        rebuild(out, out)


if __name__ == "__main__":
    main()
