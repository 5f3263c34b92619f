"""The command fuzzer, run long: tests/test_fuzz_commands.py (every command's command line and every API call, over
damaged received folders and crafted data files) with many more inputs than the suite draws, each input's drawing
and outcome logged, then tallied into bench/results/fuzz.md: inputs per command and outcome, the kinds of folders
and data files drawn, the slowest inputs, and whether every one held the property (success, or a non-zero status
and one ``clutune: error:`` line with nothing written outside the places named for writing).

A failure is reported as pytest reports it, with the falsifying input and its ``@reproduce_failure`` line.
Usage: python bench/fuzz.py [--examples 150] [--seed 0] [--out bench/results/fuzz.md]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from table import write_table

REPO = Path(__file__).resolve().parents[1]
TEST = "tests/test_fuzz_commands.py"


def run(examples: int, seed: int, log: Path) -> tuple[int, str, float]:
    env = {**os.environ, "CLUTUNE_FUZZ_EXAMPLES": str(examples), "CLUTUNE_FUZZ_LOG": str(log),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    argv = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:logging", "-W", "ignore",
            f"--hypothesis-seed={seed}", "-p", "no:cacheprovider"]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - start


def tally(entries: list[dict], code: int, output: str, seconds: float, examples: int, seed: int) -> list[str]:
    by_command: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    kinds: collections.Counter = collections.Counter()
    for entry in entries:
        by_command[entry["input"][0]][entry["outcome"]] += 1
        kinds.update(n for n in entry["input"][1:] if n.split(":")[0] in ("folder", "npz", "images"))
    outcomes = sorted({o for c in by_command.values() for o in c})
    lines = [
        "# Fuzzer over every command and the Python API",
        "",
        f"`python bench/fuzz.py --examples {examples} --seed {seed}` "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}): {len(entries)} inputs in {seconds / 60:.1f} "
        f"min (up to {examples} per test, inputs the shrinker replays counted too).",
        "",
        f"**Property held for every input: {'yes' if code == 0 else 'NO, see the failure below'}** (pytest exit "
        f"{code}). Each input succeeded, or failed with a non-zero status and exactly one `clutune: error: ...` line "
        "(the API: one UserError or RunFailed line), no traceback, and changed no file outside the output folder, "
        "the MLflow store and the caches it was given.",
        "",
        "## Inputs per command and outcome",
        "",
        "| command | " + " | ".join(outcomes) + " |",
        "|---|" + "---|" * len(outcomes),
    ]
    for command in sorted(by_command):
        lines.append(f"| {command} | " + " | ".join(str(by_command[command][o]) for o in outcomes) + " |")
    lines += ["", "## Received folders and data files drawn", "", "| kind | inputs |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(kinds.items())]
    slowest = sorted(entries, key=lambda e: -e["seconds"])[:5]
    lines += ["", "## Slowest inputs", "", "| seconds | input | outcome |", "|---|---|---|"]
    lines += [f"| {e['seconds']} | {' '.join(e['input'])} | {e['outcome']} |" for e in slowest]
    if code != 0:
        lines += ["", "## Failure", "", "```", output[-6000:], "```"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=150, help="inputs per test (the suite draws 40)")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis's seed, so a run can be repeated")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fuzz.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "fuzz.jsonl"
        code, output, seconds = run(args.examples, args.seed, log)
        entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    write_table(tally(entries, code, output, seconds, args.examples, args.seed), args.out)
    sys.exit(code)


if __name__ == "__main__":
    main()
