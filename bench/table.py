"""Markdown result tables for the benchmarks: printed as measured, written whole at the end."""

from __future__ import annotations

from pathlib import Path


def write_table(lines: list[str], out: str | Path) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
