"""The baseline aggregates: README's "best overall" across the eight comparison tables, over each dataset's four.

Runs `clutune aggregate` on the committed runs of bench/compare_tables.py (bench/results/compare-runs/<preset>-b<B>/
results.parquet) three ways: all eight scenarios (bench/results/aggregate), digits only (aggregate-digits) and
mnist1d only (aggregate-mnist1d). Each folder gets what the command writes (aggregate.md with the command that
made it on its first line, the CSVs, the profile figure); bench/results/aggregate-tables.json holds, per
aggregate, each method's IQM and interval and the leave-one-scenario-out ranks, which the README and
docs/aggregate.md quote: a "best overall" holds only where the top method stays first whichever scenario is
left out.

Usage: python bench/aggregate_tables.py [--results bench/results]   (seconds; no training: the compare runs are
       the raw records)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from table import finite_json

from clutune.clu.methods import exact_methods
from clutune.platform.reports.aggregate import ALL, Aggregate, write_aggregate

# name of the aggregate (its folder under results) -> the glob of compare-runs folders it reads
AGGREGATES = {"aggregate": "*", "aggregate-digits": "digits-*", "aggregate-mnist1d": "mnist1d-*"}
SUMMARY = "aggregate-tables.json"


def command(name: str, seeds: list[int] | None = None) -> str:
    """The exact command that writes the aggregate ``name`` into bench/results."""
    counted = f" --seeds {','.join(map(str, seeds))}" if seeds else ""
    return f"clutune aggregate bench/results/compare-runs/{AGGREGATES[name]} --out bench/results/{name}{counted}"


def shared_seeds(folders: list[Path]) -> list[int] | None:
    """The seeds every method ran in every folder, where some folder has more (tables regenerated on more seeds,
    or a run left out after it diverged): the aggregate counts only those, since it needs each method's runs in
    equal number per scenario. None where every folder has the same seeds for every method."""
    per_run = [
        frozenset(seeds)
        for f in folders
        for seeds in pd.read_parquet(f / "results.parquet", columns=["method", "seed"])
        .groupby("method")["seed"]
        .agg(frozenset)
    ]
    shared = frozenset.intersection(*per_run)
    return None if all(seeds == shared for seeds in per_run) else sorted(int(s) for s in shared)


def summary(result: Aggregate) -> dict:
    """What the README quotes of one aggregate: the table, the approximate methods' ranks over every scenario
    and without each one, and whether the top approximate method stays first whichever scenario is left out."""
    exact = exact_methods(result.table["method"])
    loso = result.loso
    every = loso[loso["left_out"] == ALL].dropna(subset=["rank"]).sort_values("rank")
    top = str(every["method"].iloc[0])
    without = loso[(loso["left_out"] != ALL) & (loso["method"] == top)].set_index("left_out")["rank"]
    counted = result.scores[result.scores["duplicate_of"] == ""].groupby("method")["score"]
    highest = counted.max()
    ranks = {
        left_out: {r.method: int(r.rank) for r in frame.dropna(subset=["rank"]).itertuples()}
        for left_out, frame in loso.groupby("left_out", sort=False)
    }
    seeds = result.scores[result.scores["method"] == top].groupby("scenario")["seed"].nunique()
    return {
        "scenarios": sorted(set(result.scores["scenario"])),
        # where each scenario's floor comes from (the oracle members' pairwise KL, or retrain runs) and how many
        # values it is the mean of: the prose names the floor by what it is
        "floors": {
            r.scenario: {"source": r.source, "n": int(r.n), "floor": r.floor} for r in result.floors.itertuples()
        },
        "seeds_per_scenario": sorted({int(n) for n in seeds}),
        "methods": {
            r.method: {
                "iqm": r.iqm,
                "lo": r.lo,
                "hi": r.hi,
                "runs": int(r.runs),
                "scenarios": int(r.scenarios),
                "max_score": float(highest[r.method]),  # the highest counted run: where its profile reaches 1
                "exact": r.method in exact,
            }
            for r in result.table.itertuples()
        },
        "approximate_count": int(every["rank"].notna().sum()),
        "order": [str(m) for m in every["method"]],
        "top": top,
        # the top method's interval against the next one's: overlapping intervals do not separate them
        "top_overlaps_next": _overlap(result.table.set_index("method"), top, str(every["method"].iloc[1])),
        "top_rank_without": {s: int(v) for s, v in without.items()},
        "top_holds_without_each": bool((without == 1).all()),
        "top_lost_without": [s for s, v in without.items() if v != 1],
        "ranks": {("all" if k == ALL else k): v for k, v in ranks.items()},
    }


def _overlap(table: pd.DataFrame, a: str, b: str) -> bool:
    return bool(table.loc[a, "hi"] >= table.loc[b, "lo"] and table.loc[b, "hi"] >= table.loc[a, "lo"])


def rebuild(results: Path, out: Path) -> None:
    """Every aggregate folder and aggregate-tables.json from the compare runs under ``results``."""
    summaries = {}
    for name, pattern in AGGREGATES.items():
        folders = sorted(p for p in (results / "compare-runs").glob(pattern) if (p / "results.parquet").is_file())
        seeds = shared_seeds(folders)
        result = write_aggregate(folders, out / name, seeds=seeds)
        text = (out / name / "aggregate.md").read_text()
        (out / name / "aggregate.md").write_text(f"`{command(name, seeds)}`\n\n{text}")
        summaries[name] = {"command": command(name, seeds), "seeds_counted": seeds, **summary(result)}
    (out / SUMMARY).write_text(json.dumps(finite_json(summaries), indent=1, sort_keys=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="bench/results", help="the folder holding compare-runs/, and the output")
    results = Path(parser.parse_args().results)
    rebuild(results, results)
    for one in json.loads((results / SUMMARY).read_text()).values():
        held = "holds" if one["top_holds_without_each"] else f"not without {', '.join(one['top_lost_without'])}"
        print(f"{one['command']}: {one['top']} first of {one['approximate_count']} approximate methods; {held}")


if __name__ == "__main__":
    main()
