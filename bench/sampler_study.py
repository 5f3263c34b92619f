"""Which sampler should a sweep use? TPE, GP and random search at equal budget, measured, not assumed.

For each method and sampler, ``--sampler-seeds`` sweeps of ``--trials`` trials on ``--preset`` with the tuning
procedure's settings (bench/tune_defaults.py: the replay buffer fixed at ``--buffer``, multi-seed trials, the two
robust objectives [kl_oracle_all, avg_gap] as mean + 1 x std, ASHA at request boundaries). Every sweep's
``convergence.csv`` holds its trials' objectives in trial order; the hypervolume curves are recomputed here
against ONE reference point per method (10% beyond the worst complete trial of any sampler and seed), so the
curves of different samplers and seeds compare. The report gives, per method and sampler, the median and the
min-max spread over sampler seeds of the hypervolume after 1/4, 1/2 and all of the budget, and plots the median
curves with their spread.

Each finished sweep's ``convergence.csv`` and ``trials.csv`` are kept in ``<out>/sampler-study-history/`` with the
study's options (``options.json``): they are its raw records. An interrupted study continues from them, and
``rebuild()`` (``--report-only``, ``make results``) recomputes the report from them alone: the table, the figure
and ``sampler-study-summary.json``, which README and docs/search.md quote.

Which sampler wins is a paired question: each pair of samplers is compared per method by a Wilcoxon signed-rank
test on the final hypervolume, paired by sampler seed (Holm-corrected over the pairs of a method). The default
changes only when one sampler beats the current default significantly on every method; otherwise the report says
the samplers are indistinguishable at this many seeds, and the default is kept. Three seeds cannot separate them:
the default is ten.

Usage (the full study, hours on a CPU machine):
    python bench/sampler_study.py
    python bench/sampler_study.py --methods ugclu,sfron --samplers tpe,gp,random --trials 40 --sampler-seeds 0-9
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from clutune.clu.methods import get_method
from clutune.platform.search.convergence import CSV, curve, default_reference

OBJECTIVES = ["kl_oracle_all", "avg_gap"]
COLUMNS = [f"objective_{m}" for m in OBJECTIVES]
KAPPA = 1.0
HISTORY = "sampler-study-history"  # each sweep's convergence.csv and trials.csv: the raw records
OPTIONS = "options.json"  # in HISTORY: the options the study ran with


def run_one(args: argparse.Namespace, method: str, sampler: str, seed: int) -> list[dict]:
    """One sweep; its trials in order: objective values and whether each completed every request."""
    import clutune

    sets = [
        f"sweep.seeds=[{args.seeds}]",
        f"sweep.robust={KAPPA}",
        f"sweep.objectives={OBJECTIVES}",
        f"sweep.sampler={sampler}",
        f"sweep.sampler_seed={seed}",
        "sweep.experiment=sampler-study",
        "device=cpu",
        "sweep.start=sampler",  # a first trial at tuned defaults can leave a sampler nothing to find
        *args.sets,
    ]
    if "buffer_size" in {f.name for f in fields(get_method(method).Hparams)}:
        sets.append(f"buffer_size={args.buffer}")  # memory is the budget of a comparison, not a knob
    with tempfile.TemporaryDirectory() as tmp:
        summary = clutune.sweep(
            args.preset,
            method=method,
            trials=args.trials,
            overrides=[*sets, f"sweep.storage_path={tmp}/sweeps"],
            concurrency=args.concurrency,
            tracking_uri=f"sqlite:///{Path(args.tracking_db).resolve()}",
            log=lambda *a, **k: None,
        )
        frame = pd.read_csv(summary.sweep_dir / CSV)
        history = Path(args.out) / HISTORY
        frame.to_csv(history / f"{method}-{sampler}-{seed}-convergence.csv", index=False)
        trials = pd.read_csv(summary.sweep_dir / "trials.csv")
        trials.to_csv(history / f"{method}-{sampler}-{seed}-trials.csv", index=False)
    return frame[["trial", "complete", *COLUMNS]].to_dict("records")


def curves(records: dict[str, list[dict]], trials: int) -> tuple[dict[str, np.ndarray], list[float]]:
    """Per run key, its hypervolume curve (padded to ``trials`` with its last value) against one reference
    point for all runs of a method; and that point."""
    frames = {key: pd.DataFrame(rows) for key, rows in records.items()}
    done = pd.concat([f[f["complete"]] for f in frames.values()])
    reference = [float(v) for v in default_reference(done[COLUMNS].to_numpy(dtype=float))]
    out = {}
    for key, frame in frames.items():
        status = np.where(frame["complete"], "OK", "INCOMPLETE")  # only complete trials count
        table = frame[COLUMNS].assign(trial_id=frame["trial"].astype(str), number=frame["trial"], status=status)
        hv = curve(table.assign(requests_done=1), COLUMNS, 1, reference)[0]
        values = hv["hypervolume"].to_numpy(dtype=float)
        padded = np.full(trials, values[-1] if len(values) else 0.0)
        padded[: len(values)] = values[:trials]
        out[key] = padded
    return out, reference


def summarize(state: dict, methods: list[str], samplers: list[str], seeds: list[int], trials: int) -> tuple:
    """(markdown table rows, per method {sampler: array seeds x trials}, reference points)."""
    lines, per_method, references = [], {}, {}
    marks = sorted({max(1, trials // 4), max(1, trials // 2), trials})
    for method in methods:
        records = {k: v for k, v in state.items() if k.split("/")[0] == method}
        if not records:
            continue
        hv, references[method] = curves(records, trials)
        per_method[method] = {}
        for sampler in samplers:
            runs = [hv[f"{method}/{sampler}/{s}"] for s in seeds if f"{method}/{sampler}/{s}" in hv]
            if not runs:
                continue
            stack = np.stack(runs)
            per_method[method][sampler] = stack
            cells = [
                f"{np.median(stack[:, m - 1]):.4g} [{stack[:, m - 1].min():.4g}, {stack[:, m - 1].max():.4g}]"
                for m in marks
            ]
            lines.append(f"| {method} | {sampler} | {len(runs)} | " + " | ".join(cells) + " |")
    header = " | ".join(f"hypervolume after {m} trials" for m in marks)
    table = [f"| method | sampler | sampler seeds | {header} |", "|---|---|---|" + "---|" * len(marks), *lines]
    return table, per_method, references


def plot(per_method: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * max(1, len(per_method)), 4))
    axes = np.atleast_1d(fig.subplots(1, max(1, len(per_method))))
    for ax, (method, by_sampler) in zip(axes, per_method.items(), strict=False):
        for sampler, stack in by_sampler.items():
            x = np.arange(1, stack.shape[1] + 1)
            median = np.median(stack, axis=0)
            line = ax.plot(x, median, lw=2, drawstyle="steps-post", label=f"{sampler} (median of {len(stack)})")[0]
            ax.fill_between(x, stack.min(axis=0), stack.max(axis=0), step="post", color=line.get_color(), alpha=0.2)
        ax.set_title(f"{method}: hypervolume of the front so far (band: min-max over sampler seeds)", fontsize=9)
        ax.set_xlabel("trial number")
        ax.set_ylabel("hypervolume")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: the same curves, the same bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mnist1d-agnostic-class")
    parser.add_argument("--methods", default="ugclu,sfron")
    parser.add_argument("--samplers", default="tpe,gp,random")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--sampler-seeds", default="0-9", help="a list (0,1,2) or a range (0-9)")
    parser.add_argument("--default", default="gp", help="the current default sampler (sweep.sampler)")
    parser.add_argument("--seeds", default="0,1", help="run seeds of every trial (the robust objectives)")
    parser.add_argument("--buffer", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--tracking-db", default="runs/sampler-study/mlflow.db")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra config overrides")
    parser.add_argument(
        "--report-only", action="store_true", help="only rebuild the report from the sweeps already finished"
    )
    args = parser.parse_args()
    out = Path(args.out)
    if not args.report_only:
        history = out / HISTORY
        history.mkdir(parents=True, exist_ok=True)
        Path(args.tracking_db).parent.mkdir(parents=True, exist_ok=True)
        (history / OPTIONS).write_text(json.dumps(options(args), indent=1) + "\n")
        methods, samplers = args.methods.split(","), args.samplers.split(",")
        state = load_state(history, methods, samplers, _seeds(args.sampler_seeds))
        # Seed by seed, so a study stopped early holds whole pairs (every method and sampler at each seed it reached).
        for seed in _seeds(args.sampler_seeds):
            for method in methods:
                for sampler in samplers:
                    key = f"{method}/{sampler}/{seed}"
                    if key not in state:
                        state[key] = run_one(args, method, sampler, seed)
                        done = sum(r["complete"] for r in state[key])
                        print(f"{key}: {done} of {args.trials} trials complete", flush=True)
    rebuild(out, out)
    print((out / "sampler-study.md").read_text(), flush=True)


def options(args: argparse.Namespace) -> dict:
    """The options a study ran with: its report's command and the sweeps it looks for."""
    keys = ["preset", "methods", "samplers", "trials", "sampler_seeds", "default", "seeds", "buffer", "sets"]
    return {k: getattr(args, k) for k in keys}


def load_state(history: Path, methods: list[str], samplers: list[str], seeds: list[int]) -> dict[str, list[dict]]:
    """Per finished sweep (``method/sampler/seed``) its trials in order, from the sweep's own convergence.csv:
    the record a resumed study continues from and the report is rebuilt from."""
    state = {}
    for seed in seeds:
        for method in methods:
            for sampler in samplers:
                path = history / f"{method}-{sampler}-{seed}-convergence.csv"
                if path.is_file():
                    frame = pd.read_csv(path)
                    state[f"{method}/{sampler}/{seed}"] = frame[["trial", "complete", *COLUMNS]].to_dict("records")
    return state


def rebuild(results: Path, out: Path) -> None:
    """sampler-study.md, -summary.json and .png from the sweeps' records under ``results``/sampler-study-history."""
    opts = json.loads((results / HISTORY / OPTIONS).read_text())
    args = argparse.Namespace(**opts)
    methods, samplers, seeds = opts["methods"].split(","), opts["samplers"].split(","), _seeds(opts["sampler_seeds"])
    state = load_state(results / HISTORY, methods, samplers, seeds)
    table, per_method, references = summarize(state, methods, samplers, seeds, args.trials)
    plot(per_method, out / "sampler-study.png")
    finals = {(m, s): float(np.median(a[:, -1])) for m, by in per_method.items() for s, a in by.items()}
    top = {m: max(v for (mm, _), v in finals.items() if mm == m) for m in per_method}
    best = {m: [s for (mm, s), v in finals.items() if mm == m and v == top[m]] for m in per_method}  # ties: all
    choice, shares = choose(finals, top, samplers)
    pairs, winners = verdicts(per_method, args.default)
    refs = "; ".join(f"{m}: {', '.join(f'{v:.4g}' for v in r)}" for m, r in references.items())
    command = "python bench/sampler_study.py " + " ".join(_argv(args))
    text = [
        f"# Sampler study: {', '.join(samplers)} at equal budget on {args.preset}",
        "",
        f"{args.trials} trials per sweep, sampler seeds {seeds}, run seeds [{args.seeds}] per trial, buffer "
        f"{args.buffer}, objectives {OBJECTIVES} (mean + {KAPPA} x std over run seeds), ASHA on the first. "
        f"Hypervolume of the front found so far against one reference point per method ({refs}), median "
        "[min, max] over sampler seeds.",
        "",
        *table,
        "",
        "Highest median final hypervolume: "
        + "; ".join(f"{m}: {' = '.join(s)} ({top[m]:.4g})" for m, s in best.items())
        + ".",
        "",
        "Share of each method's highest median final hypervolume, averaged over methods: "
        + ", ".join(f"{s} {v:.3f}" for s, v in sorted(shares.items(), key=lambda kv: -kv[1]))
        + f". Highest on that share (not a test): {choice}.",
        "",
        *paired_lines(pairs, winners, args.default),
        "",
        "![hypervolume curves](sampler-study.png)",
        "",
        f"Command: `{command}`",
        "",
    ]
    (out / "sampler-study.md").write_text("\n".join(text))
    complete = [sum(bool(r["complete"]) for r in rows) for rows in state.values()]
    summary = {
        "command": command,
        "preset": args.preset,
        "trials": args.trials,
        "buffer": args.buffer,
        "run_seeds": args.seeds,
        "sampler_seeds": seeds,
        "default": args.default,
        "complete_per_sweep": {"min": min(complete), "max": max(complete)},
        "methods": {
            m: {
                "reference": references[m],
                "best": best[m],
                "samplers": {
                    s: {
                        "n": int(len(a)),
                        "marks": {
                            str(k): {
                                "median": float(np.median(a[:, k - 1])),
                                "min": float(a[:, k - 1].min()),
                                "max": float(a[:, k - 1].max()),
                            }
                            for k in sorted({max(1, args.trials // 4), max(1, args.trials // 2), args.trials})
                        },
                    }
                    for s, a in by.items()
                },
                "pairs": [p for p in pairs if p["method"] == m],
            }
            for m, by in per_method.items()
        },
        "beats_default": winners,
    }
    (out / "sampler-study-summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def _seeds(text: str) -> list[int]:
    if "-" in text and "," not in text:
        low, high = (int(v) for v in text.split("-"))
        return list(range(low, high + 1))
    return [int(v) for v in text.split(",")]


def paired_tests(finals: dict[str, np.ndarray]) -> list[tuple[str, str, float, float, int]]:
    """(a, b, median of a - b, Holm-corrected p, pairs) for each pair of samplers: Wilcoxon signed-rank on the
    final hypervolume paired by sampler seed (exact two-sided p; a pair with no difference at all has p = 1). The
    arrays run in seed order from the first seed, so a sampler with fewer finished seeds pairs on its prefix."""
    from scipy import stats

    names = sorted(finals)
    raw = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            n = min(len(finals[a]), len(finals[b]))
            diff = finals[a][:n] - finals[b][:n]
            p = 1.0 if not np.any(diff) else float(stats.wilcoxon(diff, alternative="two-sided").pvalue)
            raw.append((a, b, float(np.median(diff)), p, n))
    order = sorted(range(len(raw)), key=lambda k: raw[k][3])
    holm, running = [0.0] * len(raw), 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(raw) - rank) * raw[k][3]))
        holm[k] = running
    return [(a, b, d, holm[k], n) for k, (a, b, d, _, n) in enumerate(raw)]


def verdicts(per_method: dict[str, dict[str, np.ndarray]], default: str) -> tuple[list[dict], list[str]]:
    """Every pair's test per method, and the samplers that beat the default significantly on every method."""
    pairs, beats_default = [], {}
    for method, by in per_method.items():
        finals = {s: a[:, -1] for s, a in by.items()}
        for a, b, diff, p, n in paired_tests(finals):
            winner = None if p >= 0.05 else (a if diff > 0 else b)
            pairs.append({"method": method, "a": a, "b": b, "median_diff": diff, "p_holm": p, "n": n, "winner": winner})
            if winner is not None and default in (a, b) and winner != default:
                beats_default.setdefault(winner, set()).add(method)
    return pairs, [s for s, ms in beats_default.items() if ms == set(per_method)]


def paired_lines(pairs: list[dict], winners: list[str], default: str) -> list[str]:
    """The paired comparison per method, and the default it supports, in words that match the tests."""
    lines = ["Paired by sampler seed (final hypervolume, Wilcoxon signed-rank, Holm over each method's pairs):", ""]
    for t in pairs:
        words = "indistinguishable" if t["winner"] is None else f"{t['winner']} higher"
        lines.append(
            f"- {t['method']}: {t['a']} - {t['b']} median {t['median_diff']:+.4g}, p_holm = {t['p_holm']:.3g} "
            f"({words}, {t['n']} paired seeds)"
        )
    lines += [
        "",
        f"Sampler that beats the default ({default}) significantly on every method: "
        + (f"**{winners[0]}**: the default should change." if winners else f"none: **{default}** stays the default."),
    ]
    return lines


def choose(finals: dict, top: dict, samplers: list[str]) -> tuple[str, dict[str, float]]:
    """The sampler with the highest mean, over methods, of its median final hypervolume as a share of the
    method's best sampler's: one rule that weighs each method the same whatever its hypervolume's scale. Only
    samplers run on every method compete."""
    methods = list(top)
    complete = [s for s in samplers if all((m, s) in finals for m in methods)]
    shares = {s: float(np.mean([finals[(m, s)] / top[m] for m in methods])) for s in complete}
    return max(shares, key=shares.get), shares


def _argv(args: argparse.Namespace) -> list[str]:
    """The options this study ran with, as a command line to repeat it."""
    items = [
        f"--preset {args.preset}",
        f"--methods {args.methods}",
        f"--samplers {args.samplers}",
        f"--trials {args.trials}",
        f"--sampler-seeds {args.sampler_seeds}",
        f"--seeds {args.seeds}",
        f"--buffer {args.buffer}",
    ]
    return items + [f"--set '{s}'" for s in args.sets]


if __name__ == "__main__":
    main()
