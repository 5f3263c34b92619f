"""Which requests can give a sweep objective a value under the oracle policy, checked before any work.

An oracle metric (KL to the oracle, the accuracy gaps) is NaN at every request the policy does not score, and a
split metric is NaN where its split is empty: the learn split exists only at a learn request, the unlearn split
only once something was unlearned. An objective that is NaN at every request leaves every trial without a value
(the Pareto front comes out empty), so it is refused. One that is NaN until the last request leaves ASHA
nothing to compare at its rungs, so it never prunes; that is allowed (the search still works) but said.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from clutune.core.oracle import oracle_requests
from clutune.errors import UserError

ORACLE_PREFIXES = ("kl_oracle_", "gap_")
ORACLE_METRICS = ("avg_gap",)


def needs_oracle(metric: str) -> bool:
    """True for metrics scored against the exact oracle (NaN where the policy trains none)."""
    return metric.startswith(ORACLE_PREFIXES) or metric in ORACLE_METRICS


def valued_requests(metric: str, policy: str, every: int, kinds: Sequence[str]) -> list[int]:
    """The requests at which ``metric`` can be finite: scored by an oracle if it needs one, with a non-empty
    split if it names one (``_learn``: a learn request; ``_unlearn``: at or after the first unlearn)."""
    scored = oracle_requests(policy, every, list(kinds))
    first_unlearn = next((k for k, kind in enumerate(kinds) if kind == "unlearn"), len(kinds))
    out = []
    for k, kind in enumerate(kinds):
        if needs_oracle(metric) and not scored[k]:
            continue
        if metric.endswith("_learn") and kind != "learn":
            continue
        if metric.endswith("_unlearn") and k < first_unlearn:
            continue
        out.append(k)
    return out


def check_objectives(
    objectives: Sequence[str], policy: str, every: int, kinds: Sequence[str], asha: bool, log: Callable[[str], None]
) -> None:
    """Refuse (one line) an objective with no value at any request under ``policy``; say in one line when ASHA
    cannot prune because the first objective has no value before the last request."""
    where = f"oracle.policy {policy}" + (f" (every {every})" if policy == "every_k" else "")
    for metric in objectives:
        if not valued_requests(metric, policy, every, kinds):
            raise UserError(
                f"config key 'sweep.objectives': {metric} has no value at any of the {len(kinds)} requests under "
                f"{where}, so no trial could be scored; choose another objective or oracle policy"
            )
    first = valued_requests(objectives[0], policy, every, kinds)
    if asha and first[0] == len(kinds) - 1:
        log(
            f"ASHA cannot prune: the first objective {objectives[0]} has no value before the last request under "
            f"{where}, so every trial runs all {len(kinds)} requests"
        )


__all__ = ["check_objectives", "needs_oracle", "valued_requests"]
