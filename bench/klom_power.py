"""KLoM at the model counts clutune can afford: the value on identical distributions and the power to see a shift.

Two parts, each for both estimators (clutune.core.klom):

- **Synthetic normals**, issue #32's probe: per count pair (method models x oracle models), 2,000 draws of a sample
  whose margins are N(0, 1) on both sides (identical) and 2,000 where the method's are N(1, 1) (a 1-sd shift). The
  median value on identical distributions, and the AUC: the chance that a shifted sample scores above an identical
  one (ties count half). Repeated over independent replications to give each number's spread.
- **Real retrain ensembles** on digits-random's forget split (the 252 samples its three unlearn requests removed),
  every model trained by the oracle recipe (clutune.core.oracle.train_oracle) with its own seed:
  - oracle members: seeds 0..31 on the owned ids after the last request (member 0 is today's oracle);
  - retrain runs: seeds 100..115 on the same ids (the floor's pool: seeds other than the members');
  - finetune: seeds 100..115 on the owned ids plus the forget set, a model that never unlearned.
  Per count pair: the members' halves against each other, finetune's KLoM against its floor with 95% jackknife
  intervals (separated: finetune's interval wholly above the floor's), and over random subsets of the pools the
  share of subsets that separate finetune (power) and that separate a retrain subset from a disjoint one (false
  alarms). Margins are rounded to float16, as the runs keep them.

Writes bench/results/klom_power.json, bench/results/klom_power.md, a figure of margin histograms
(klom_power-margins.png) and the margins (float16) in bench/results/klom_power-margins.npz, from which
``--from-margins`` recomputes everything without training; ``rebuild()`` (``make results``) rewrites the report,
the figure and klom_power-summary.json from the committed records in seconds.
Usage: python bench/klom_power.py [--out bench/results] [--from-margins PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats
from table import write_table

from clutune.core.config import load_config
from clutune.core.experiment import prepare
from clutune.core.klom import klom_with_floor, margins, per_sample, resolve_estimator, summarise
from clutune.core.oracle import train_oracle

SYNTHETIC_COUNTS = ((5, 8), (8, 32), (8, 64), (16, 64), (64, 64))
# Issue #32's table: binned median (identical), binned 1-sd AUC, normal median (identical), normal 1-sd AUC.
ISSUE_TABLE = {
    (5, 8): (7.60, 0.57, 0.27, 0.75),
    (8, 32): (2.19, 0.69, 0.12, 0.89),
    (8, 64): (1.22, 0.77, 0.11, 0.91),
    (16, 64): (0.95, 0.84, 0.06, 0.98),
    (64, 64): (0.54, 0.95, 0.02, 1.00),
}
DRAWS = 2000
REPLICATIONS = 8
ESTIMATORS = ("binned", "normal")

PRESET = "digits-random"
MEMBER_SEEDS = tuple(range(32))
RETRAIN_SEEDS = tuple(range(100, 116))
FINETUNE_SEEDS = tuple(range(100, 116))
REAL_COUNTS = ((3, 4), (3, 8), (5, 8), (8, 16), (8, 32))  # (method seeds, oracle members)
HALVES = (8, 16, 32)  # members split into two halves of M / 2 against each other
SUBSETS = 20  # random draws from the pools per count pair
SEED = 0


def auc(shifted: np.ndarray, identical: np.ndarray) -> float:
    """The chance that a shifted sample scores above an identical one, ties counting half; a NaN value (binned,
    every method model at the joint maximum) left out."""
    shifted, identical = shifted[np.isfinite(shifted)], identical[np.isfinite(identical)]
    return float(stats.mannwhitneyu(shifted, identical).statistic / (len(shifted) * len(identical)))


def synthetic() -> list[dict[str, Any]]:
    records = []
    for n, m in SYNTHETIC_COUNTS:
        for rep in range(REPLICATIONS):
            rng = np.random.default_rng([SEED, n, m, rep])
            same = rng.normal(size=(n, DRAWS)), rng.normal(size=(m, DRAWS))
            shift = rng.normal(size=(n, DRAWS)) + 1.0, rng.normal(size=(m, DRAWS))
            for estimator in ESTIMATORS:
                identical, shifted = per_sample(*same, estimator), per_sample(*shift, estimator)
                records.append(
                    {
                        "n_method": n,
                        "n_oracle": m,
                        "replication": rep,
                        "estimator": estimator,
                        "median_identical": float(np.median(identical)),
                        "auc_1sd": auc(shifted, identical),
                    }
                )
    return records


def train_pools() -> dict[str, Any]:
    """Margins on the forget split of every model of the three pools, and the seconds each model took."""
    torch.set_num_threads(1)  # what an oracle task gets
    prep = prepare(load_config(PRESET))
    owned = prep.scenario.owned(-1).nonzero().flatten()
    forget = prep.scenario.unlearned(-1).nonzero().flatten()
    never_unlearned = torch.cat([owned, forget]).sort().values
    labels = prep.dataset.y_train[forget].cpu().numpy()
    pools, seconds = {}, []
    for name, ids, seeds in (
        ("members", owned, MEMBER_SEEDS),
        ("retrain", owned, RETRAIN_SEEDS),
        ("finetune", never_unlearned, FINETUNE_SEEDS),
    ):
        rows = []
        for seed in seeds:
            t0 = time.perf_counter()
            _, out = train_oracle(prep.dataset, ids, prep.recipe, seed)
            seconds.append(time.perf_counter() - t0)
            logits = out.logits_train[forget].cpu().numpy()
            rows.append(margins(logits, labels).astype(np.float16))
            print(f"{name} seed {seed}: {seconds[-1]:.2f} s", flush=True)
        pools[name] = np.stack(rows)
    pools["forget_ids"] = forget.cpu().numpy()
    pools["seconds_per_model"] = np.asarray(seconds)
    return pools


def real(pools: dict[str, np.ndarray]) -> dict[str, list[dict[str, Any]]]:
    members, retrain, finetune = (pools[k].astype(np.float64) for k in ("members", "retrain", "finetune"))
    halves = []
    for size in HALVES:
        for estimator in ESTIMATORS:
            s = summarise(members[size // 2 : size], members[: size // 2], estimator)
            halves.append({"members": size, "estimator": estimator, "mean": s.mean, "lo": s.mean_lo, "hi": s.mean_hi})
    counts = []
    rng = np.random.default_rng(SEED)
    for n, m in REAL_COUNTS:
        for estimator in ESTIMATORS:
            klom, floor = klom_with_floor(finetune[:n], members[:m], retrain[:n], estimator)
            ft_values = per_sample(finetune[:n], members[:m], estimator)
            floor_values = per_sample(retrain[:n], members[:m], estimator)
            separated, alarms = 0, 0
            for _ in range(SUBSETS):
                who = rng.permutation(len(retrain))
                oracle = members[rng.choice(len(members), m, replace=False)]
                method = finetune[rng.choice(len(finetune), n, replace=False)]
                k, f = klom_with_floor(method, oracle, retrain[who[:n]], estimator)
                separated += k.mean_lo > f.mean_hi
                r, f2 = klom_with_floor(retrain[who[n : 2 * n]], oracle, retrain[who[:n]], estimator)
                alarms += r.mean_lo > f2.mean_hi
            counts.append(
                {
                    "n_method": n,
                    "n_oracle": m,
                    "estimator": estimator,
                    "klom": klom.mean,
                    "klom_lo": klom.mean_lo,
                    "klom_hi": klom.mean_hi,
                    "klom_p95": klom.p95,
                    "floor": floor.mean,
                    "floor_lo": floor.mean_lo,
                    "floor_hi": floor.mean_hi,
                    "floor_p95": floor.p95,
                    "separated": bool(klom.mean_lo > floor.mean_hi),
                    "per_sample_auc": auc(ft_values, floor_values),
                    "power": separated / SUBSETS,
                    "false_alarms": alarms / SUBSETS,
                }
            )
    return {"halves": halves, "counts": counts}


def chosen(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """The cheapest count pair (method seeds first: each runs the whole stream, then members) at which the estimator
    ``auto`` uses there separates finetune from its floor on the full pools and in every random subset, with no
    false alarm."""
    passing = sorted(
        (c["n_method"], c["n_oracle"])
        for c in counts
        if c["estimator"] == resolve_estimator("auto", c["n_method"], c["n_oracle"])
        and c["separated"]
        and c["power"] == 1.0
        and c["false_alarms"] == 0.0
    )
    if not passing:
        return {}
    n, m = passing[0]
    return {"n_method": int(n), "n_oracle": int(m), "estimator": resolve_estimator("auto", n, m)}


def costs(seconds: np.ndarray, pick: dict[str, Any], results: Path) -> dict[str, Any]:
    """What the chosen counts cost on digits-random: oracle members at every scored request, and method seeds, from
    this run's model times and the committed compare runs' per-run seconds (under ``results``)."""
    runs = pd.read_parquet(
        results / "compare-runs" / f"{PRESET}-b200" / "results.parquet",
        columns=["method", "seed", "request", "seconds"],
    )
    per_run = runs.groupby(["method", "seed"])["seconds"].sum().groupby("method").mean()
    scored = int(runs["request"].nunique())  # oracle.policy every: each request is scored
    per_model = float(np.median(seconds))
    out = {"oracle_seconds_per_model": per_model, "scored_requests": scored, "method_run_seconds": per_run.to_dict()}
    if pick:
        out["members_seconds_solo"] = pick["n_oracle"] * scored * per_model
        out["today_oracle_seconds"] = scored * per_model
    return out


def figure(pools: dict[str, np.ndarray], path: Path) -> None:
    """Margin histograms of four forget samples, at the quartiles and the 95th percentile of finetune's normal-fit
    KLoM against all the members: the members, the retrain runs and finetune, each over its seeds."""
    members, retrain, finetune = (pools[k].astype(np.float64) for k in ("members", "retrain", "finetune"))
    values = per_sample(finetune, members, "normal")
    order = np.argsort(values)
    picks = [order[int(q * (len(order) - 1))] for q in (0.25, 0.5, 0.75, 0.95)]
    fig = Figure(figsize=(12, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, j, q in zip(fig.subplots(1, len(picks)), picks, ("25th", "50th", "75th", "95th"), strict=True):
        every = np.concatenate([members[:, j], retrain[:, j], finetune[:, j]])
        bins = np.linspace(every.min(), every.max(), 16)
        for data, label, colour in (
            (members[:, j], f"oracle members ({len(members)})", "C0"),
            (retrain[:, j], f"retrain runs ({len(retrain)})", "C2"),
            (finetune[:, j], f"finetune ({len(finetune)})", "C3"),
        ):
            ax.hist(data, bins=bins, density=True, alpha=0.45, color=colour, label=label)
        ax.set_title(f"sample {int(pools['forget_ids'][j])}: {q} pct, KLoM {values[j]:.2g}", fontsize=9)
        ax.set_xlabel("margin (correct logit − logsumexp of the others)", fontsize=8)
    fig.axes[0].set_ylabel("density over models")
    fig.axes[0].legend(fontsize=7)
    fig.savefig(path, format="png", metadata={"Software": None})  # no version stamp: the same margins, the same bytes


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": torch.get_num_threads()}


def _f(x: float) -> str:
    return f"{x:.3g}"


def table(
    syn: list[dict[str, Any]],
    res: dict[str, Any],
    pick: dict[str, Any],
    cost: dict[str, Any],
    seconds: dict[str, float],
) -> list[str]:
    frame = pd.DataFrame(syn)
    models = sum(res[k]["models"] for k in ("members", "retrain", "finetune"))
    lines = [
        "# KLoM: value on identical distributions and power, by estimator and model counts",
        "",
        "`python bench/klom_power.py` (see its docstring). Synthetic normal margins, issue #32's probe: "
        f"{DRAWS:,} draws a cell, {REPLICATIONS} independent replications (mean ± sd over them), the issue's value "
        "in brackets.",
        "",
        "| models (method × oracle) | binned: identical, median | binned: 1-sd AUC | normal: identical, median "
        "| normal: 1-sd AUC |",
        "|---|---|---|---|---|",
    ]
    for (n, m), issue in ISSUE_TABLE.items():
        cells = []
        for i, estimator in enumerate(ESTIMATORS):
            g = frame[(frame["n_method"] == n) & (frame["n_oracle"] == m) & (frame["estimator"] == estimator)]
            for j, column in enumerate(("median_identical", "auc_1sd")):
                cells.append(f"{g[column].mean():.2f} ± {g[column].std(ddof=1):.3f} [{issue[2 * i + j]:.2f}]")
        lines.append(f"| {n} × {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The medians and the normal fit's AUCs reproduce the issue's within their spread. The binned AUCs come out "
        "0.02-0.05 below the issue's, several replication sds away, at every count: the issue's probe drew or "
        "counted in some way it does not state. The conclusion stands either way: at 5 × 8 the binned value is "
        "almost all bias (7.6 on identical distributions) and barely tells a 1-sd shift from none, while the "
        "normal fit's bias is small and its AUC 0.75.",
        "",
        f"## Real retrain ensembles: {PRESET}, forget split ({len(res['forget_ids'])} samples)",
        "",
        f"Every model trained by the oracle recipe, one thread; {cost['oracle_seconds_per_model']:.2f} s per model "
        f"(median) on this machine, shared with other jobs; {seconds['training']:.0f} s training the {models} models, "
        f"{seconds['real_statistics']:.0f} s of statistics. Margins kept as float16.",
        "",
        "Oracle members split into two halves against each other (a KLoM between identical distributions, at "
        "M/2 × M/2). Intervals here and below are ± 1.96 jackknife standard errors over models; an earlier run of "
        "this bench with percentile-bootstrap intervals over models (models redrawn with replacement) put the "
        "point below its own interval (at M = 8: binned 8.8 [9.09, 10.7], normal 1.15 [1.29, 1.22e+03]), because "
        "a repeated model shrinks a side's spread, so clutune.core.klom uses the jackknife.",
        "",
        "| members M | estimator | KLoM of one half against the other [95% CI] |",
        "|---|---|---|",
    ]
    for h in res["halves"]:
        lines.append(f"| {h['members']} | {h['estimator']} | {_f(h['mean'])} [{_f(h['lo'])}, {_f(h['hi'])}] |")
    lines += [
        "",
        "finetune (never unlearned: trained on the owned ids plus the forget set) against the members, beside "
        "klom_floor (retrain runs at the same counts against the same members); mean over the forget samples with "
        "its 95% jackknife interval over models. Separated: finetune's interval wholly above the floor's. "
        f"Power and false alarms over {SUBSETS} random subsets of the pools: the share that separate finetune "
        "from the floor, and the share that separate a retrain subset "
        "from a disjoint one. Per-sample AUC: the chance a forget sample's finetune value exceeds its floor value.",
        "",
        "| seeds × members | estimator | finetune KLoM [95% CI] | klom_floor [95% CI] | separated | power "
        "| false alarms | per-sample AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in res["counts"]:
        lines.append(
            f"| {c['n_method']} × {c['n_oracle']} | {c['estimator']} | {_f(c['klom'])} [{_f(c['klom_lo'])}, "
            f"{_f(c['klom_hi'])}] | {_f(c['floor'])} [{_f(c['floor_lo'])}, {_f(c['floor_hi'])}] | "
            f"{'yes' if c['separated'] else 'no'} | {c['power']:.2f} | {c['false_alarms']:.2f} | "
            f"{c['per_sample_auc']:.2f} |"
        )
    lines += ["", "## The counts chosen", ""]
    if pick:
        n, m = pick["n_method"], pick["n_oracle"]
        run_s = cost["method_run_seconds"]
        lines += [
            f"**{n} method seeds against M = {m} oracle members**: the fewest method seeds, then the fewest members, "
            f"at which the estimator `auto` uses there ({pick['estimator']}) separates finetune from retrain with "
            f"non-overlapping intervals, on the full pools and in all {SUBSETS} random subsets, with no false alarm.",
            "",
            f"Cost on {PRESET} ({cost['scored_requests']} scored requests): the members are {m} oracles per scored "
            f"request, {m * cost['scored_requests']} trainings, {cost['members_seconds_solo']:.0f} s one at a time "
            f"at this run's {cost['oracle_seconds_per_model']:.2f} s a model (today: one oracle per request, "
            f"{cost['today_oracle_seconds']:.0f} s), before any packing. The method seeds are "
            f"the expensive side: a seed runs the whole stream, {run_s['finetune']:.1f} s for finetune to "
            f"{run_s['ugclu']:.1f} s for ugclu per run in the committed compare runs (bench/results/compare-runs), "
            "and the retrain runs behind the floor need as many seeds again.",
        ]
    else:
        lines.append("No count pair measured here separates finetune from retrain under both estimators.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--from-margins", help="a klom_power-margins.npz to reuse instead of training the pools")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    syn = synthetic()
    syn_seconds = time.perf_counter() - t0
    if args.from_margins:
        with np.load(args.from_margins) as saved:
            pools = dict(saved)
    else:
        pools = train_pools()
        np.savez_compressed(out / "klom_power-margins.npz", **pools)
    t1 = time.perf_counter()
    res = real(pools)
    res["forget_ids"] = pools["forget_ids"].tolist()
    for pool in ("members", "retrain", "finetune"):
        res[pool] = {"models": int(len(pools[pool]))}
    pick = chosen(res["counts"])
    cost = costs(pools["seconds_per_model"], pick, Path(__file__).parent / "results")
    payload = {
        "machine": machine(),
        "synthetic": syn,
        "issue_table": {f"{n}x{m}": v for (n, m), v in ISSUE_TABLE.items()},
        "real": res,
        "chosen": pick,
        "cost": cost,
        "seconds": {
            "synthetic": syn_seconds,
            "training": float(pools["seconds_per_model"].sum()),
            "real_statistics": time.perf_counter() - t1,
        },
    }
    (out / "klom_power.json").write_text(json.dumps(payload, indent=1))
    rebuild(out, out)


def rebuild(results: Path, out: Path) -> None:
    """klom_power.md, the margins figure and klom_power-summary.json (what docs/concepts.md quotes) from the
    margins (klom_power-margins.npz) and the statistics recorded from them (klom_power.json: the synthetic
    replications and the real-ensemble tables, whose random subsets take a minute to redraw, so they rebuild from
    that record); the chosen counts and their cost are recomputed."""
    payload = json.loads((results / "klom_power.json").read_text())
    with np.load(results / "klom_power-margins.npz") as saved:
        pools = dict(saved)
    figure(pools, out / "klom_power-margins.png")
    res = payload["real"]
    pick = chosen(res["counts"])
    cost = costs(pools["seconds_per_model"], pick, results)
    write_table(table(payload["synthetic"], res, pick, cost, payload["seconds"]), out / "klom_power.md")
    frame = pd.DataFrame(payload["synthetic"])
    first = frame[(frame["n_method"] == SYNTHETIC_COUNTS[0][0]) & (frame["n_oracle"] == SYNTHETIC_COUNTS[0][1])]
    at = [c for c in res["counts"] if pick and (c["n_method"], c["n_oracle"]) == (pick["n_method"], pick["n_oracle"])]
    fewer = [
        c
        for c in res["counts"]
        if pick
        and c["n_method"] == pick["n_method"]
        and c["n_oracle"] < pick["n_oracle"]
        and c["estimator"] == resolve_estimator("auto", c["n_method"], c["n_oracle"])
    ]
    summary = {
        "command": "python bench/klom_power.py",
        "synthetic_first": {
            "n_method": SYNTHETIC_COUNTS[0][0],
            "n_oracle": SYNTHETIC_COUNTS[0][1],
            **{
                e: {k: float(first[first["estimator"] == e][k].mean()) for k in ("median_identical", "auc_1sd")}
                for e in ESTIMATORS
            },
        },
        "pools": {k: res[k]["models"] for k in ("members", "retrain", "finetune")},
        "forget_samples": len(res["forget_ids"]),
        "subsets": SUBSETS,
        "chosen": pick,
        "at_chosen": next((c for c in at if c["estimator"] == pick.get("estimator")), None),
        "fewer_members": fewer,
    }
    (out / "klom_power-summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
