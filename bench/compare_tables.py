"""README's comparison tables: every method at equal memory, on fresh seeds, with its tuned defaults.

For each preset of a dataset (agnostic-class and random) and each of the dataset's two memory budgets, runs
`clutune compare` over all methods (exact retrain included, as the noise floor) on the fresh seeds
100-104 (never used for tuning), scored against an oracle ensemble of M = 8 members per scored request
(`oracle.ensemble`: the floor comes from the members' pairwise KL, not from one oracle draw), with
`--set buffer_size=B` so every replaying method keeps the same number of samples. The raw records are
bench/results/compare-runs/<preset>-b<B>/: results.parquet (every run's rows, all batches together: the folders
`clutune aggregate bench/results/compare-runs/*` summarises) and commands.json (the exact commands, with their
wall seconds where they were timed).

`rebuild(results, out)` derives everything else from those records alone, in seconds: each table
compare-<preset>-b<B>.md (the commands first; marks against the best approximate method of each column, retrain
shown as the floor), compare-<preset>-b<B>.csv beside it (the table in long form: comparator and Holm-adjusted p
of every method in every column) and compare-tables.json, what README and docs/benchmarks.md quote: per table
each method's mean and interval of kl_oracle_all and avg_gap, its rank among the approximate methods, the
comparator, the Holm-corrected p against it and on how many seeds the comparator was better, and the
samples_processed ratio of ugclu to an exact retrain (a cost claim holds per scenario kind, not across them).

Methods can be run in batches (`--batch NAME --methods ...`, each its own `clutune compare` folder on the same
cached oracles); every run of the script gathers all batches found.

With M >= 2 (the default 8) a table adds the ensemble columns (`kl_over_floor`: KL to a member over the
members' floor), KLoM beside its floor and the floor of every scored request with its interval; the kept records
then also hold klom.csv.gz (KLoM per scored request) and klom_summary.csv (KLoM pooled over the requests, which
needs the members' margins and so is kept as the command wrote it). `--ensemble 1` scores against one oracle.
`--study` keeps a run's records apart from the published tables (bench/results/klom-runs/<preset>-b<B>-m<M>/,
table compare-m<M>-<preset>-b<B>.md), so a side study is never counted in the aggregates.
`--oracle-cache DIR` trains the oracles into DIR (a fresh folder: the cost of a table from scratch).

Usage: python bench/compare_tables.py --dataset digits|mnist1d [--methods ...] [--batch NAME] [--tables-only]
       [--presets random] [--budgets 200] [--seeds 100,...] [--ensemble 8] [--study] [--oracle-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from table import finite_json

from clutune.clu.methods import exact_methods, has_hparam
from clutune.core.klom import markdown as klom_markdown
from clutune.platform.reports.stats import long_form
from clutune.platform.run.compare import format_table, summary_table

BUDGETS = {"digits": (200, 500), "mnist1d": (500, 1000)}
METHODS = "retrain,ugclu,finetune,er,derpp,ewc,lwf,ga,rl,salun,sfron,scrub"
SEEDS = "100,101,102,103,104"  # fresh seeds, never used for tuning
ENSEMBLE_MEMBERS = 8  # oracle members per scored request in the published tables
PRESETS = ("agnostic-class", "random")
SUMMARY = "compare-tables.json"
# The columns docs/benchmarks.md repeats of each table, and those compare-tables.json ranks in full
SHOWN = ("kl_oracle_all", "kl_oracle_unlearn", "avg_gap", "gap_unlearn", "mia_member_rate", "acc_test")
SHOWN += ("forgetting", "samples_processed")
RANKED = ("kl_oracle_all", "avg_gap")
ENSEMBLE = ("kl_over_floor",)  # with an oracle ensemble: each method's KL to a member over the members' floor
COST = ("ugclu", "retrain")  # the samples_processed ratio README quotes: UG-CLU against an exact retrain
MEMBERS = re.compile(r"oracle\.ensemble=(\d+)")
FOLDER = re.compile(r"(?P<preset>(?P<dataset>[a-z0-9]+)-(?P<kind>.+))-b(?P<budget>\d+)(?:-m(?P<members>\d+))?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--out", default=None, help="runs/compare, or runs/compare-m<M> with --ensemble")
    parser.add_argument("--batch", default="all", help="name of this batch of methods")
    parser.add_argument("--tables-only", action="store_true", help="only gather the records of earlier batches")
    parser.add_argument("--presets", default=",".join(PRESETS), help="which of agnostic-class,random")
    parser.add_argument("--budgets", default=None, help="which of the dataset's budgets (default both)")
    parser.add_argument("--seeds", default=SEEDS, help="the fresh seeds every method runs on")
    parser.add_argument(
        "--ensemble", type=int, default=ENSEMBLE_MEMBERS, help="oracle members per scored request (KLoM from 2)"
    )
    parser.add_argument(
        "--study", action="store_true", help="keep the records apart from the published tables (klom-runs/)"
    )
    parser.add_argument("--oracle-cache", default=None, help="oracle.cache_dir for the commands")
    args = parser.parse_args()
    results = Path("bench/results")
    if args.ensemble < 1:
        parser.error(f"--ensemble must be >= 1, not {args.ensemble}")
    tag = f"-m{args.ensemble}" if args.study else ""
    root = Path(args.out or f"runs/compare-m{args.ensemble}")
    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else BUDGETS[args.dataset]
    extra = [f"oracle.ensemble={args.ensemble}"] if args.ensemble > 1 else []
    extra += [f"oracle.cache_dir={args.oracle_cache}"] if args.oracle_cache else []
    for preset in (f"{args.dataset}-{p}" for p in args.presets.split(",")):
        for budget in budgets:
            base = f"{preset}-b{budget}"
            out = root / f"{base}-{args.batch}"
            cmd = _command(preset, out, args.methods, budget, extra, root, args.seeds)
            if not args.tables_only:
                print("clutune " + " ".join(cmd), flush=True)
                t0 = time.perf_counter()
                _run(cmd, out)
                (out / "wall_seconds.json").write_text(json.dumps({"wall_seconds": time.perf_counter() - t0}))
            batches = [p.parent for p in sorted(root.glob(f"{base}-*/results.parquet"))]
            kept = results / "klom-runs" / f"{base}{tag}" if tag else results / "compare-runs" / base
            commands = [_command(preset, b, _methods(b), budget, extra, root, args.seeds) for b in batches]
            _keep(batches, kept, commands, args.ensemble > 1)
    rebuild(results, results)
    for preset in (f"{args.dataset}-{p}" for p in args.presets.split(",")):
        for budget in budgets:
            print((results / f"compare{tag}-{preset}-b{budget}.md").read_text(), flush=True)


def _run(cmd: list[str], out: Path) -> None:
    """One `clutune compare`. It refuses to summarise a grid in which runs diverged; for a published table a
    divergence is a result, so which runs stopped, at which request and why go to out/diverged.json (their rows
    stop there) and the table is built without them. Any other failure stops the script."""
    done = subprocess.run(
        [sys.executable, "-m", "clutune.cli", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    sys.stderr.write(done.stderr)
    if done.returncode == 0:
        return
    rows = pd.read_parquet(out / "results.parquet") if (out / "results.parquet").exists() else None
    stopped = stopped_runs(rows) if rows is not None else []
    errors = [line for line in done.stderr.splitlines() if line.startswith("clutune: error:")]
    if not stopped or not errors or "runs diverged" not in errors[-1]:
        raise SystemExit(f"error: `clutune {' '.join(cmd)}` failed (exit {done.returncode})")
    (out / "diverged.json").write_text(json.dumps({"error": errors[-1], "runs": stopped}, indent=1) + "\n")


def stopped_runs(rows: pd.DataFrame) -> list[dict]:
    """The (method, seed) runs whose rows stop before the grid's last request, with the request they stopped
    at: a run that diverged writes no row from there on."""
    last = int(rows["request"].max())
    ends = rows.groupby(["method", "seed"])["request"].max()
    return [{"method": str(m), "seed": int(s), "request": int(r) + 1} for (m, s), r in ends.items() if r < last]


def _keep(batches: list[Path], kept: Path, commands: list[list[str]], klom: bool) -> None:
    """The raw records of one table: every batch's rows together, the commands with their wall seconds and,
    with an oracle ensemble, KLoM per request and pooled (from the batches that finished: a batch with a
    diverged run stops before KLoM). The rows of runs that diverged go to diverged.parquet, with what stopped
    them in diverged.json, so results.parquet (what the table and the aggregates read) holds complete runs only."""
    kept.mkdir(parents=True, exist_ok=True)
    rows = pd.concat([pd.read_parquet(b / "results.parquet") for b in batches], ignore_index=True)
    stopped = [r for b in batches if (b / "diverged.json").exists() for r in _diverged(b)]
    lost = rows.set_index(["method", "seed"]).index.isin([(r["method"], r["seed"]) for r in stopped])
    rows[~lost].to_parquet(kept / "results.parquet", index=False, compression="zstd")
    for name in ("diverged.parquet", "diverged.json"):
        (kept / name).unlink(missing_ok=True)
    if stopped:
        rows[lost].to_parquet(kept / "diverged.parquet", index=False, compression="zstd")
        (kept / "diverged.json").write_text(json.dumps(stopped, indent=1) + "\n")
    timed = [
        {"command": "clutune " + " ".join(c), "wall_seconds": _wall(b)} for b, c in zip(batches, commands, strict=True)
    ]
    (kept / "commands.json").write_text(json.dumps(timed, indent=1) + "\n")
    finished = [b for b in batches if (b / "klom.csv").exists()]
    if klom and finished:
        per_request = pd.concat([pd.read_csv(b / "klom.csv") for b in finished], ignore_index=True)
        per_request.to_csv(kept / "klom.csv.gz", index=False)
        pooled = pd.concat([pd.read_csv(b / "klom_summary.csv") for b in finished], ignore_index=True)
        pooled.to_csv(kept / "klom_summary.csv", index=False)


def _diverged(batch: Path) -> list[dict]:
    """A batch's diverged runs, each with the error line the command ended on."""
    record = json.loads((batch / "diverged.json").read_text())
    return [{**run, "error": record["error"]} for run in record["runs"]]


def _command(preset: str, out: Path, methods: str, budget: int, extra: list[str], root: Path, seeds: str) -> list[str]:
    """The batch's `clutune compare`; the buffer is set only where a method of the batch keeps one (compare
    refuses a setting no method of the batch has)."""
    cmd = ["compare", "--config", preset, "--methods", methods, "--seeds", seeds, "--out", str(out)]
    buffered = any(has_hparam(m, "buffer_size") for m in methods.split(","))
    cmd += ["--set", f"buffer_size={budget}"] if buffered else []
    cmd += [*(a for e in extra for a in ("--set", e)), "--overwrite"]
    return [*cmd, "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]


def _methods(folder: Path) -> str:
    return ",".join(pd.read_parquet(folder / "results.parquet")["method"].unique())


def _wall(folder: Path) -> int | None:
    timing = folder / "wall_seconds.json"
    return round(json.loads(timing.read_text())["wall_seconds"]) if timing.exists() else None


def rebuild(results: Path, out: Path) -> None:
    """Every table, its long form and compare-tables.json from the records under ``results`` alone."""
    folders = sorted((results / "compare-runs").glob("*/results.parquet"))
    folders += sorted((results / "klom-runs").glob("*/results.parquet"))
    tables = {}
    for path in folders:
        folder = path.parent
        name = _table_name(folder.name)
        rows = pd.read_parquet(path)
        table = summary_table(rows)
        long_form(table).to_csv(out / f"{name}.csv", index=False)
        text = format_table(table, f"{name}.csv")
        if (folder / "klom_summary.csv").exists():
            pooled = pd.read_csv(folder / "klom_summary.csv")
            text += "\n\n" + klom_markdown(pooled.sort_values(["split", "klom_mean"], kind="stable"))
            text += "\n" + _floor_table(rows)
        (out / f"{name}.md").write_text(_header(folder, rows) + text + "\n")
        tables[name] = summarise(folder, rows, table) | {"published": folder.parent.name == "compare-runs"}
        if (folder / "klom_summary.csv").exists():
            tables[name]["ensemble"] = ensemble(folder, rows)
    (out / SUMMARY).write_text(json.dumps(finite_json({"tables": tables, **findings(tables)}), indent=1) + "\n")


def _table_name(folder: str) -> str:
    """compare-<preset>-b<B> for an M = 1 folder, compare-m<M>-<preset>-b<B> for an ensemble's."""
    match = FOLDER.fullmatch(folder)
    assert match is not None, folder
    base = f"{match['preset']}-b{match['budget']}"
    return f"compare-m{match['members']}-{base}" if match["members"] else f"compare-{base}"


def _header(folder: Path, rows: pd.DataFrame) -> str:
    """The exact commands that produced the records, then what the table is."""
    match = FOLDER.fullmatch(folder.name)
    assert match is not None
    commands = json.loads((folder / "commands.json").read_text())
    lines = "\n".join(
        f"`{c['command']}`" + (f" ({c['wall_seconds']} s wall)" if c["wall_seconds"] is not None else "")
        for c in commands
    )
    seeds = ",".join(str(s) for s in sorted(rows["seed"].unique()))
    lost = "".join(
        f" {r['method']} diverged on seed {r['seed']} at request {r['request']}: that run is left out of the table"
        " (its rows are in diverged.parquet), so its cells are over the other seeds and flatter it, and its tests"
        " pair the seeds both methods ran."
        for r in diverged(folder)
    )
    return (
        f"{lines}\n\n{match['preset']}, buffer {match['budget']} for every replaying method, over seeds {seeds}, "
        f"each run's mean over its requests.{lost}\n\n"
    )


def diverged(folder: Path) -> list[dict]:
    """The runs of a kept table that diverged (none where diverged.json is absent)."""
    path = folder / "diverged.json"
    return json.loads(path.read_text()) if path.exists() else []


def _floor_table(rows: pd.DataFrame) -> str:
    """The oracle floor of each scored request (the same for every method: one set of members), with the range
    that holds 95% of the member pairs."""
    scored = rows[rows["oracle_floor"].notna()].drop_duplicates("request").sort_values("request")
    lines = [
        "oracle_floor: the mean KL between two oracle members of a scored request [2.5th, 97.5th percentile over "
        "the member pairs]; kl_over_floor (above) is each method's mean KL to a member over it.",
        "",
        "| request | kind | oracle_floor |",
        "|---|---|---|",
        *(
            f"| {r.request} | {r.kind} | {r.oracle_floor:.4g} [{r.oracle_floor_lo:.4g}, {r.oracle_floor_hi:.4g}] |"
            for r in scored.itertuples()
        ),
    ]
    return "\n".join(lines) + "\n"


def summarise(folder: Path, rows: pd.DataFrame, table: pd.DataFrame) -> dict:
    """One table's numbers as README quotes them (see the module docstring)."""
    match = FOLDER.fullmatch(folder.name)
    assert match is not None
    shown = [*SHOWN, *(m for m in ENSEMBLE if m in rows)]
    per_run = rows.groupby(["method", "seed"])[shown].mean()
    exact = sorted(exact_methods(table.index))
    metrics = {}
    for metric in shown:
        column = table[metric]
        comparator = str(column["comparator"].iloc[0]) or None
        approximate = [m for m in column.index if m not in exact]
        ascending = metric != "acc_test"
        order = column.loc[approximate, "mean"].sort_values(ascending=ascending, kind="stable")
        rank = {m: i + 1 for i, m in enumerate(order.index)}
        metrics[metric] = {
            "comparator": comparator,
            "order": list(order.index),
            "methods": {
                str(m): {
                    "mean": float(r["mean"]),
                    "lo": float(r["lo"]),
                    "hi": float(r["hi"]),
                    "half": float(r["hi"] - r["mean"]),
                    "n": int(r["n"]),
                    "rank": rank.get(m),
                    "p_holm": float(r["p_holm"]),
                    "tied": bool(r["tied"]),
                    "exact": m in exact,
                    "seeds_comparator_better": _seeds_better(per_run, metric, comparator, str(m), ascending),
                }
                for m, r in column.loc[list(table.index)].iterrows()
            },
        }
    return {
        "file": f"{_table_name(folder.name)}.md",
        "dataset": match["dataset"],
        "preset": match["preset"],
        "kind": "class" if "class" in match["kind"] else "random",
        "budget": int(match["budget"]),
        "members": _members(folder),
        "seeds": sorted(int(s) for s in rows["seed"].unique()),
        "paired": bool(table.attrs["paired"]),
        "exact": exact,
        "metrics": metrics,
        "cost": _cost(per_run),
        "diverged": [{k: r[k] for k in ("method", "seed", "request")} for r in diverged(folder)],
    }


def _members(folder: Path) -> int:
    """Oracle members per scored request, as the kept commands set them (one where none does)."""
    found = {int(m) for c in json.loads((folder / "commands.json").read_text()) for m in MEMBERS.findall(c["command"])}
    assert len(found) <= 1, f"{folder}: batches with different oracle ensembles {sorted(found)}"
    return found.pop() if found else 1


def ensemble(folder: Path, rows: pd.DataFrame) -> dict:
    """An ensemble table's KLoM (pooled over the scored requests, as kept), the samples each split pools, and
    the oracle floor of every scored request."""
    klom = pd.read_csv(folder / "klom_summary.csv")
    per_request = pd.read_csv(folder / "klom.csv.gz").drop_duplicates(["request", "split"])
    samples = per_request.groupby("split")["n_samples"].agg(["sum", "count", "min", "max"])
    scored = rows[rows["oracle_floor"].notna()].drop_duplicates("request").sort_values("request")
    return {
        "klom": klom.to_dict("records"),
        "samples": {
            split: {"total": int(r["sum"]), "requests": int(r["count"]), "min": int(r["min"]), "max": int(r["max"])}
            for split, r in samples.iterrows()
        },
        "floor": [
            {"request": int(r.request), "kind": r.kind, "mean": r.oracle_floor, "lo": r.oracle_floor_lo}
            | {"hi": r.oracle_floor_hi}
            for r in scored.itertuples()
        ],
    }


def _seeds_better(per_run: pd.DataFrame, metric: str, comparator: str | None, method: str, lower: bool) -> int | None:
    """On how many seeds the comparator's run beat ``method``'s (paired by seed); None for the comparator."""
    if comparator is None or method == comparator:
        return None
    a = per_run.loc[comparator, metric]
    b = per_run.loc[method, metric].reindex(a.index)
    return int(((a < b) if lower else (a > b)).sum())


def _cost(per_run: pd.DataFrame) -> dict | None:
    """samples_processed of ugclu over an exact retrain's: the ratio of the means, and its range over seeds (None
    where either did not run)."""
    if not set(COST) <= set(per_run.index.get_level_values("method")):
        return None
    top, bottom = (per_run.loc[m, "samples_processed"] for m in COST)
    per_seed = top / bottom.reindex(top.index)
    return {
        "of": list(COST),
        "ratio": float(top.mean() / bottom.mean()),
        "min": float(per_seed.min()),
        "max": float(per_seed.max()),
    }


def findings(tables: dict[str, dict]) -> dict:
    """What the prose claims, computed over the published tables (compare-runs/, not a study's klom-runs/): per
    dataset, the best approximate method of each ranked column per table, in how many of them UG-CLU is that
    method, the runner-up's Holm p where it is, and how far above the floor UG-CLU's KL sits; the cost ratio per
    dataset and scenario kind. Tables without ugclu or retrain (a partial batch) give no UG-CLU findings and no
    cost."""
    plain = {name: t for name, t in tables.items() if t["published"]}
    by_dataset = {}
    for dataset in sorted({t["dataset"] for t in plain.values()}):
        mine = [t for t in plain.values() if t["dataset"] == dataset]
        if not all(set(COST) <= set(t["metrics"]["kl_oracle_all"]["methods"]) for t in mine):
            continue
        per_metric: dict[str, dict] = {}
        for metric in RANKED:
            comparators = [t["metrics"][metric]["comparator"] for t in mine]
            per_metric[metric] = {
                "comparators": comparators,
                "ugclu_best_in": sum(c == "ugclu" for c in comparators),
                "tables": len(mine),
                "approximate": len(mine[0]["metrics"][metric]["order"]),
                # per table: the comparator, the next method, its Holm p and the seeds the comparator won
                "runner_up_p": [_runner_up(t["metrics"][metric]) for t in mine],
            }
        over = [t["metrics"]["kl_oracle_all"]["methods"] for t in mine]
        over = [m["ugclu"]["mean"] / m["retrain"]["mean"] for m in over]
        per_metric["ugclu_over_floor"] = {"min": min(over), "max": max(over)}  # UG-CLU's KL over retrain's
        by_dataset[dataset] = per_metric
    cost: dict[str, list[float]] = {}
    for t in plain.values():
        if t["cost"] is not None:
            cost.setdefault(f"{t['dataset']}-{t['kind']}", []).append(t["cost"]["ratio"])
    return {
        "by_dataset": by_dataset,
        "cost_by_kind": {k: {"min": min(v), "max": max(v)} for k, v in sorted(cost.items())},
    }


def _runner_up(column: dict) -> dict | None:
    """The second approximate method of a column with its Holm p against the comparator and the seeds on which
    the comparator beat it."""
    if len(column["order"]) < 2 or column["comparator"] is None:
        return None
    name = column["order"][1]
    one = column["methods"][name]
    return {
        "comparator": column["comparator"],
        "method": name,
        "p_holm": one["p_holm"],
        "seeds_comparator_better": one["seeds_comparator_better"],
        "n": one["n"],
    }


if __name__ == "__main__":
    main()
