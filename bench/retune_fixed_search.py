"""Retunes with the fixed search (a stopped trial told to the sampler as pruned, the `first` pick) kept apart
from the shipped tuning: the digits retune at a cap of 60 trials, which reached no verdict and so raised the cap to
120 (the shipped tuning-digits), and a retune not yet applied (mnist1d at 120, while it runs). Their records under
bench/results/retune-fixed-search/tuning-<dataset>/ rebuild through the shipped tuning's own rebuild, so all are
read the same way.

Usage: python bench/retune_fixed_search.py [--results bench/results] [--out bench/results]
The runs: `python bench/tune_defaults.py --dataset digits --trials 60 --min-trials 20 --seeds 0,1 --sampler gp
--pick first --out DIR --no-write-best` and `--dataset mnist1d --trials 120 ...`, then DIR/tuning-<dataset>/ moved
under bench/results/retune-fixed-search/. A method with a record is skipped, so copying a folder back to DIR and
running the same command continues an unfinished retune.
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
