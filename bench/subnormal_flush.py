"""Subnormal flushing on a long stream: UG-CLU on `digits-long-200`, one seed, `compute.flush_denormal` on and off.

UG-CLU's weights into ReLU units that never fire only shrink under weight decay, and its dead units rise from
about 8% to 45% over this stream, so the question is whether its cost per request grows when subnormal weights
are computed as IEEE floats, and how many weights are subnormal by the end. Each setting runs in its own process
(a thread's float mode is its own, so the settings cannot leak into each other), in-process and on one intra-op
thread, as a study's trial runs (``threads: 1``); both run at the same time, so the machine's load is the same
for both. Per request, the raw record keeps the row's wall and CPU seconds of training and of the whole step,
the sample passes, the dead units and the count of subnormal weights after the request.

Writes bench/results/subnormal-flush/results.parquet, then :func:`rebuild` derives subnormal-flush.md and .json:
per setting and request kind, CPU seconds of training and of evaluation, last fifth of the stream over the first
(medians), and the subnormal weights at the end.

Usage: python bench/subnormal_flush.py [--seed 0] [--oracle-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from clutune.core.config import load_config
from clutune.core.experiment import ExperimentRun, method_hparams, prepare

PRESET, METHOD = "digits-long-200", "ugclu"
STUDY = "subnormal-flush"
WINDOW = 0.2  # the first and the last fifth of the stream, as bench/long_sequence.py compares them
KEEP = (
    *("request", "kind", "seed", "method", "intra_op_threads", "samples_processed", "dead_units", "kl_oracle_all"),
    *("seconds", "cpu_seconds", "step_seconds", "cpu_step_seconds"),
)


def subnormal_weights(model: nn.Module) -> tuple[int, int]:
    """(subnormal, total) parameter elements: nonzero and below the dtype's smallest normal magnitude."""
    subnormal = total = 0
    for p in model.parameters():
        tiny = torch.finfo(p.dtype).tiny
        subnormal += int(((p != 0) & (p.abs() < tiny)).sum())
        total += p.numel()
    return subnormal, total


def worker(flush: bool, seed: int, cache: str, out: Path) -> None:
    """One setting's stream, its rows written to ``out`` (parquet)."""
    sets = [f"oracle.cache_dir={cache}", f"compute.flush_denormal={str(flush).lower()}"]
    config = load_config(PRESET, sets)
    prep = prepare(config)
    run = ExperimentRun(prep, METHOD, method_hparams(config, METHOD, config.dataset.name), seed)
    rows = []
    for row in run.steps():
        subnormal, total = subnormal_weights(run.method.model)
        rows.append({**{k: row[k] for k in KEEP}, "flush_denormal": flush, "subnormal": subnormal, "weights": total})
    pd.DataFrame(rows).to_parquet(out, compression="zstd")


def late_over_early(rows: pd.DataFrame) -> pd.DataFrame:
    """Per setting and request kind: first- and last-fifth medians of the CPU seconds of training and of
    evaluation (step minus training), of the wall seconds and of the sample passes, and late / early."""
    rows = rows.assign(
        cpu_eval_seconds=rows["cpu_step_seconds"] - rows["cpu_seconds"],
        eval_seconds=rows["step_seconds"] - rows["seconds"],
    )
    n = int(rows["request"].max()) + 1
    k = round(n * WINDOW)
    out = []
    columns = ("cpu_seconds", "cpu_eval_seconds", "seconds", "eval_seconds", "samples_processed")
    for (flush, kind), frame in rows.groupby(["flush_denormal", "kind"]):
        early, late = frame[frame["request"] < k], frame[frame["request"] >= n - k]
        for column in columns:
            a, b = float(early[column].median()), float(late[column].median())
            out.append({"flush_denormal": bool(flush), "kind": kind, "column": column, "early": a, "late": b})
    frame = pd.DataFrame(out)
    return frame.assign(**{"late/early": frame["late"] / frame["early"]})


def rebuild(results: Path, out: Path) -> None:
    """subnormal-flush.md and .json from the raw records under ``results``; no training."""
    rows = pd.read_parquet(results / STUDY / "results.parquet")
    meta = json.loads((results / STUDY / "run.json").read_text())
    ratios = late_over_early(rows)
    last = rows[rows["request"] == rows["request"].max()].set_index("flush_denormal")
    subnormal_max = rows.groupby("flush_denormal")["subnormal"].max()
    summary = {
        "preset": PRESET,
        "method": METHOD,
        "seed": meta["seed"],
        "intra_op_threads": sorted(int(t) for t in rows["intra_op_threads"].unique()),
        "late_over_early": {
            ("on" if flush else "off"): {
                kind: {
                    r["column"]: {"early": r["early"], "late": r["late"], "ratio": r["late/early"]}
                    for _, r in g.iterrows()
                }
                for kind, g in frame.groupby("kind")
            }
            for flush, frame in ratios.groupby("flush_denormal")
        },
        "subnormal_at_end": {("on" if f else "off"): int(last.loc[f, "subnormal"]) for f in last.index},
        "subnormal_max": {("on" if f else "off"): int(v) for f, v in subnormal_max.items()},
        "weights": int(rows["weights"].iloc[0]),
        "total_cpu_seconds": {
            ("on" if f else "off"): float(v)
            for f, v in rows.groupby("flush_denormal")["cpu_step_seconds"].sum().items()
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{STUDY}.json").write_text(json.dumps(summary, indent=1) + "\n")
    table = ratios.assign(flush_denormal=ratios["flush_denormal"].map({True: "on", False: "off"}))
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r] for r in table.itertuples(index=False)]
    lines = [
        f"# Subnormal flushing: {METHOD} on {PRESET}, seed {meta['seed']}, compute.flush_denormal on and off",
        "",
        f"Machine: {meta['machine']}; {meta['load']}.",
        f"Command: `{meta['command']}`",
        "",
        f"Intra-op threads per run: {', '.join(map(str, summary['intra_op_threads']))}. Subnormal weights after "
        f"the last request: {summary['subnormal_at_end']['on']} with flushing, {summary['subnormal_at_end']['off']} "
        f"without (most at any request: {summary['subnormal_max']['on']} and {summary['subnormal_max']['off']}; "
        f"{summary['weights']} weights). Process CPU seconds of the whole stream: "
        f"{summary['total_cpu_seconds']['on']:.1f} with flushing, {summary['total_cpu_seconds']['off']:.1f} without.",
        "",
        "## Per-request cost, first fifth against last fifth (medians)",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
        *["| " + " | ".join(c) + " |" for c in cells],
    ]
    (out / f"{STUDY}.md").write_text("\n".join(lines) + "\n")


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracle-cache", default=None, help="oracle cache (default: a fresh one in a temp folder)")
    parser.add_argument("--worker", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker == "on", args.seed, args.oracle_cache, args.rows)
        return
    folder = Path("bench/results") / STUDY
    folder.mkdir(parents=True, exist_ok=True)
    cache = args.oracle_cache or str(Path(tempfile.mkdtemp()) / "oracles")
    start = _load()
    if args.oracle_cache is None:  # the oracles first, once, so the two streams do not both train them
        oracles = [sys.executable, "-m", "clutune.cli", "oracles", "--config", PRESET]
        subprocess.run([*oracles, "--set", f"oracle.cache_dir={cache}"], check=True)
    base = [sys.executable, __file__, "--seed", str(args.seed), "--oracle-cache", cache]
    paths = {s: folder / f"flush-{s}.parquet" for s in ("on", "off")}  # kept if the other stream fails
    procs = [subprocess.Popen([*base, "--worker", s, "--rows", str(p)]) for s, p in paths.items()]
    if any(p.wait() for p in procs):
        raise SystemExit("a stream failed")
    rows = pd.concat([pd.read_parquet(p) for p in paths.values()], ignore_index=True)
    rows.to_parquet(folder / "results.parquet", compression="zstd")
    for path in paths.values():
        path.unlink()
    meta = {
        "seed": args.seed,
        "command": "python bench/subnormal_flush.py"
        + (f" --seed {args.seed}" if args.seed else "")
        + (f" --oracle-cache {args.oracle_cache}" if args.oracle_cache else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load": f"load average {start} at the start, {_load()} at the end",
    }
    (folder / "run.json").write_text(json.dumps(meta, indent=1) + "\n")
    rebuild(Path("bench/results"), Path("bench/results"))


if __name__ == "__main__":
    main()
