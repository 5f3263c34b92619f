"""What bench/results holds, as committed: its file count and size, for docs/benchmarks.md's "Raw records".

The count is of the repository's tracked files (``git ls-files bench/results``), not of whatever a rebuild folder
holds, so it states what a clone gets. ``raw-records.json`` leaves itself out of both numbers, or its own size
would move them. The size is in MB to one decimal: a figure redrawn on another machine changes its bytes, not
what the page states.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = "raw-records.json"


def tracked() -> list[Path]:
    """The tracked files under bench/results, this summary left out."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "bench/results"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / p for p in listing.split("\0") if p and Path(p).name != SUMMARY]


def rebuild(results: Path, out: Path) -> None:
    files = tracked()
    sizes = {p: p.stat().st_size for p in files if p.is_file()}
    folders: dict[str, int] = {}
    for path in sizes:
        parts = path.relative_to(ROOT / "bench" / "results").parts
        name = parts[0] + "/" if len(parts) > 1 else "(top level)"
        folders[name] = folders.get(name, 0) + 1
    summary = {
        "command": "git ls-files bench/results",
        "files": len(files),
        "megabytes": round(sum(sizes.values()) / 1e6, 1),
        "folders": dict(sorted(folders.items())),
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("bench/results"), help="the raw records")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where raw-records.json go")
    args = parser.parse_args()
    rebuild(args.results, args.out)


if __name__ == "__main__":
    main()
