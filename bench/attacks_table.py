"""Forgetting under attack on digits-rigorous: the table and the findings docs/benchmarks.md and README quote.

The records are one ``clutune compare`` on the ``digits-rigorous`` preset (its command is kept beside them, in
``command.txt``): ``results.parquet`` (every row: each method, seed and request), the per-request KLoM, ε and
relapse tables, and each run's U-LiRA likelihood ratios. ``rebuild()`` recomputes from them
``comparison.md`` as the command wrote it, the report's two attack figures (``ulira_roc.png``,
``epsilon_histogram.png``) and ``attacks.json``, the numbers the docs quote: per method the mean and
95% t half-width over seeds of each run's mean over its scored requests, and the pooled ε score against its
ceiling. The ε and KLoM summaries are read as the command wrote them (``epsilon_summary.csv``,
``klom_summary.csv``): they come from the oracle members' margins, which are not kept (tens of MB), so those two
columns rebuild from their summaries only.

Usage (about ten minutes on 2 cores; writes the records into runs/rigorous, to be copied here):
    clutune compare --config digits-rigorous --methods ugclu,sfron,salun,scrub,er,finetune,retrain \\
        --seeds 0,1,2,3,4 --out runs/rigorous --no-tracking
    python bench/make_results.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from clutune.guards.received_folder import ReceivedFolder
from clutune.platform.reports.attack_plots import attack_scores, epsilon_figure, roc_figure
from clutune.platform.run.compare import epsilon_text, format_table, klom_section, summary_table

STUDY = "attacks-digits-rigorous"
COLUMNS = ["kl_oracle_all", "ulira_auc", "ulira_tpr1", "relearn_gap", "relapse_acc"]
ORACLE = "retrain"  # exact retraining: the reference every approximate method is read against


def per_method(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Per method and column: mean and the 95% t half-width over seeds (0 where the seeds agree exactly)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method, row in table.iterrows():
        out[str(method)] = {
            c: {"mean": float(row[(c, "mean")]), "half": float(row[(c, "hi")] - row[(c, "mean")])} for c in COLUMNS
        }
    return out


def findings(methods: dict, epsilon: dict) -> dict:
    """The claims the prose makes, each computed: which method leads on ε and on KL among the approximate ones,
    whether its ε interval clears every other's, whether ε orders them as KL does, and how far the attacks move."""
    approximate = [m for m in methods if m != ORACLE]
    by_kl = sorted(approximate, key=lambda m: methods[m]["kl_oracle_all"]["mean"])
    by_eps = sorted(approximate, key=lambda m: -epsilon[m]["f_over_ceiling"])
    leader = by_eps[0]
    oracle_auc = methods[ORACLE]["ulira_auc"]
    return {
        "kl_order": by_kl,
        "epsilon_order": by_eps,
        "epsilon_leader": leader,
        "kl_leader": by_kl[0],
        "leader_clear": all(epsilon[leader]["ratio_lo"] > epsilon[m]["ratio_hi"] for m in approximate if m != leader),
        # ε never increases along the KL order (ties allowed): ε ranks them as KL does
        "same_order": all(
            epsilon[a]["f_over_ceiling"] >= epsilon[b]["f_over_ceiling"] for a, b in zip(by_kl, by_kl[1:], strict=False)
        ),
        # neighbours in the ε order with the same score: level, whatever order the list puts them in
        "epsilon_level": [
            [a, b]
            for a, b in zip(by_eps, by_eps[1:], strict=False)
            if epsilon[a]["f_over_ceiling"] == epsilon[b]["f_over_ceiling"]
        ],
        "auc_max_distance": max(abs(v["ulira_auc"]["mean"] - 0.5) for v in methods.values()),
        "oracle_auc_covers_half": abs(oracle_auc["mean"] - 0.5) <= oracle_auc["half"],
        "relearn_max": max(v["relearn_gap"]["mean"] for v in methods.values()),
        "relearn_max_method": max(methods, key=lambda m: methods[m]["relearn_gap"]["mean"]),
        "relearn_max_others": sorted(v["relearn_gap"]["mean"] for v in methods.values())[-2],
        "relapse_max": max(v["relapse_acc"]["mean"] for v in methods.values()),
        "any_reaches_ceiling": any(epsilon[m]["ratio_hi"] >= 1 for m in approximate),
    }


def rebuild(results: Path, out: Path) -> None:
    folder, target = results / STUDY, out / STUDY
    target.mkdir(parents=True, exist_ok=True)
    rows = pd.read_parquet(folder / "results.parquet")
    klom = pd.read_csv(folder / "klom_summary.csv")
    eps = pd.read_csv(folder / "epsilon_summary.csv")
    table = summary_table(rows)
    comparison = format_table(table) + "\n\n" + klom_section(klom, None) + epsilon_text(eps, None)
    (target / "comparison.md").write_text(comparison + "\n")
    roc_figure(attack_scores(ReceivedFolder(folder), rows), target / "ulira_roc.png")
    limit = float(eps["bucket_limit"].max())
    epsilon_figure(pd.read_csv(folder / "epsilon_examples.csv.gz"), target / "epsilon_histogram.png", limit)
    methods = per_method(table)
    epsilon = {
        r["method"]: {k: float(r[k]) for k in ("f_over_ceiling", "ratio_lo", "ratio_hi", "f_ceiling")}
        for r in eps.to_dict("records")
    }
    first = eps.iloc[0]
    summary = {
        "command": (folder / "command.txt").read_text().strip(),
        "seeds": sorted(int(s) for s in rows["seed"].unique()),
        "epsilon_counts": {
            "runs": int(first["n_runs"]),
            "members": int(first["n_members"]),
            "samples": int(first["n_samples"]),
            "requests": int(first["n_requests"]),
            "bucket_limit": float(first["bucket_limit"]),
        },
        "order": list(methods),
        "methods": {m: {**methods[m], "epsilon": epsilon[m]} for m in methods},
        "findings": findings(methods, epsilon),
    }
    (target / "attacks.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("bench/results"), help="the raw records")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/results"),
        help="where attacks.json, comparison.md and the attack figures go",
    )
    args = parser.parse_args()
    rebuild(args.results, args.out)


if __name__ == "__main__":
    main()
