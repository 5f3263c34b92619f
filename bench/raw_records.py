"""What bench/results holds, as committed: its file count and size, for docs/benchmarks.md's "Raw records".

The count is of the repository's tracked files (``git ls-files bench/results``), not of whatever a rebuild folder
holds, so it states what a clone gets. ``raw-records.json`` leaves itself out of both numbers, or its own size
would move them.
"""

from __future__ import annotations

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
    studies: dict[str, dict[str, int]] = {}
    for path, size in sizes.items():
        parts = path.relative_to(ROOT / "bench" / "results").parts
        study = studies.setdefault(parts[0] if len(parts) > 1 else "(top level)", {"files": 0, "bytes": 0})
        study["files"] += 1
        study["bytes"] += size
    summary = {
        "command": "git ls-files bench/results",
        "files": len(files),
        "bytes": sum(sizes.values()),
        "folders": dict(sorted(studies.items())),
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
