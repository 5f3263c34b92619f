"""UG-CLU's mnist1d search in a wider space, and that pick projected into the shipped space.

Separates the search budget from the space: the shipped tuning's UG-CLU record on mnist1d, the 60-trial search
of ``bench/spaces/ugclu-wide.yaml`` (bench/results/tuning-wide/tuning-mnist1d.json, the pick confirmed on seeds
100-102) and the projected point's own runs on those seeds (bench/results/tuning-wide/projected/results.parquet,
every request's row). ``rebuild`` writes tuning-wide-summary.json, which Search's section quotes.

Usage: python bench/tuning_wide.py [--results bench/results] [--out bench/results]
The runs themselves: `python bench/tune_defaults.py --dataset mnist1d --methods ugclu --space
bench/spaces/ugclu-wide.yaml --trials 60 --min-trials 20 --seeds 0,1 --sampler gp`, then `clutune compare` of
the projected point on seeds 100,101,102 (the command is in projected/comparison.md's folder record).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from scipy import stats
from table import rebuild_command


def _mean_halfwidth(values: pd.Series) -> dict[str, float]:
    """Mean and 95% Student-t half-width over runs: the intervals every comparison table prints."""
    n = len(values)
    return {"mean": float(values.mean()), "half_width": float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / n**0.5)}


def rebuild(results: Path, out: Path) -> None:
    wide = json.loads((results / "tuning-wide" / "tuning-mnist1d.json").read_text())["ugclu"]
    shipped = {
        record.parent.name: json.loads(record.read_text())
        for record in sorted((results / "tuning-mnist1d").glob("*/record.json"))
    }
    rows = pd.read_parquet(results / "tuning-wide" / "projected" / "results.parquet")
    per_run = rows.groupby("seed")["kl_oracle_all"].mean()
    others = {m: r["confirmed_mean_kl_oracle_all"] for m, r in shipped.items() if m != "ugclu"}
    summary = {
        "shipped": {
            "confirmed_mean": shipped["ugclu"]["confirmed_mean_kl_oracle_all"],
            "trials": shipped["ugclu"]["trials"],
            "converged": shipped["ugclu"]["converged"],
            "rank": 1 + sum(v < shipped["ugclu"]["confirmed_mean_kl_oracle_all"] for v in others.values()),
            "methods": 1 + len(others),
        },
        "wide": {
            "confirmed_mean": wide["confirmed_mean_kl_oracle_all"],
            "confirmed_std": wide["confirmed_std_kl_oracle_all"],
            "trials": wide["trials"],
            "converged": wide["converged"],
            "below_every_other_method": all(wide["confirmed_mean_kl_oracle_all"] < v for v in others.values()),
        },
        "projected": {**_mean_halfwidth(per_run), "seeds": [int(s) for s in per_run.index]},
        "projected_below_every_other_method": all(per_run.mean() < v for v in others.values()),
        "best_other": min(others, key=others.get),
        "best_other_value": min(others.values()),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuning-wide-summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    rebuild_command(rebuild, __doc__)


if __name__ == "__main__":
    main()
