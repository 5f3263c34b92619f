"""The retune of every method with the fixed search (a stopped trial told to the sampler as pruned, the `first`
pick, the same 60-trial cap), kept apart from the shipped tuning until its picks are applied and the tables
regenerated with them: its records under bench/results/retune-fixed-search/tuning-<dataset>/ rebuild through the
shipped tuning's own rebuild, so both are read the same way.

Usage: python bench/retune_fixed_search.py [--results bench/results] [--out bench/results]
The run itself: `python bench/tune_defaults.py --dataset digits --trials 60 --min-trials 20 --seeds 0,1
--sampler gp --pick first --out DIR --no-write-best` (and `--dataset mnist1d`), then DIR/tuning-<dataset>/ moved
under bench/results/retune-fixed-search/.
"""

from __future__ import annotations

from pathlib import Path

from table import rebuild_command
from tune_defaults import rebuild as rebuild_tuning

FOLDER = "retune-fixed-search"


def rebuild(results: Path, out: Path) -> None:
    rebuild_tuning(results / FOLDER, out / FOLDER)


def main() -> None:
    rebuild_command(rebuild, __doc__)


if __name__ == "__main__":
    main()
