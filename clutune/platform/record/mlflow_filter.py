"""MLflow search filters over tag values that come from the file system (a folder's path, a run id).

MLflow's filter grammar has no escape for a quote inside a quoted value: ``'it''s'`` and ``'it\\'s'`` match
nothing. A value is quoted with whichever quote it does not contain; a value holding both kinds is left out of
the filter, and every tag is then compared exactly in Python, so a folder named ``it's`` finds its runs and a
crafted name cannot widen or break the query.
"""

from __future__ import annotations

from typing import Any


def quote(value: str) -> str | None:
    """``value`` as a filter literal, or None when it holds both quote characters (no literal can say it)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def tag_filter(tags: dict[str, str]) -> str:
    """``tags.`k` = 'v' and ...`` over the tags a literal can express."""
    clauses = [f"tags.`{k}` = {q}" for k, v in tags.items() if (q := quote(v)) is not None]
    return " and ".join(clauses)


def runs_with_tags(client: Any, experiment_id: str, tags: dict[str, str], max_results: int = 5000) -> list[Any]:
    """The runs of the experiment carrying exactly these tag values (``client.search_runs`` narrows, then each
    run's tags are compared exactly). An empty list when the client answered nothing (a soft-failing client)."""
    runs = client.search_runs([experiment_id], filter_string=tag_filter(tags), max_results=max_results) or []
    return [r for r in runs if all(r.data.tags.get(k) == v for k, v in tags.items())]


__all__ = ["quote", "runs_with_tags", "tag_filter"]
