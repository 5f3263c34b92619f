"""Markdown result tables for the benchmarks: printed as measured, written whole at the end."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def write_table(lines: list[str], out: str | Path) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def finite_json(value: object) -> object:
    """NaN and infinities as null: JSON has no NaN, and a summary a template reads must parse anywhere."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rebuild_command(rebuild: Callable[[Path, Path], None], doc: str | None) -> None:
    """The command line of a study that only rebuilds: --results (the raw records) and --out, both bench/results
    by default, as `make results` calls it."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("bench/results"), help="the raw records")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where the derived files go")
    args = parser.parse_args()
    rebuild(args.results, args.out)
