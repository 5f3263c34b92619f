"""KLoM of a finished (method, seed) grid: each method's seeds against the oracle members, beside its floor.

A compare or study with at least 2 method seeds and ``oracle.ensemble`` M ≥ 2 plans n floor models per scored
request (n: the number of method seeds; seeds right after the members', :func:`clutune.core.members.floor_seeds`),
exact retrains trained and cached like members but kept out of the trials. After the grid the parent writes their
margins beside the members' (``margins/floor/``) and reads every run's margins back (:mod:`clutune.core.margins`).

Per scored request, three splits:

- ``forget``: the samples unlearned at that request (unlearn requests only; margins.py's ``unlearn`` split holds
  every sample forgotten so far, of which these are the request's own);
- ``retain``: the samples owned after the request (margins.py's ``remain`` and ``learn``);
- ``test``: the test set.

``klom.csv`` holds a row per (request, split, method). The summary pools each split's samples over the scored
requests (a model's seed index is the same across requests, so the jackknife over models still removes one
seed, or one member, at a time) and gives one row per (split, method), each with its ``klom_floor``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clutune.core.klom import CLIP, klom_grid, markdown
from clutune.core.margins import (
    correct_class_margin,
    floor_margins_path,
    member_margins_path,
    read_margins,
    run_margins_path,
    write_margins,
)
from clutune.core.metrics import SPLITS
from clutune.core.oracle import OracleOutputs
from clutune.core.scenarios import Scenario
from clutune.data import Dataset

KLOM_SPLITS = ("forget", "retain", "test")
SPLIT_MEANING = {
    "forget": "the samples unlearned at an unlearn request",
    "retain": "the samples owned after the request",
    "test": "the test set",
}
MIN_SEEDS = 2
MIN_MEMBERS = 2


def floor_count(ensemble: int, seeds: int) -> int:
    """Floor models a grid needs per scored request: as many as the method seeds, where KLoM can be computed."""
    return seeds if why_no_klom(ensemble, seeds) is None else 0


def why_no_klom(ensemble: int, seeds: int) -> str | None:
    """The one line that says why a grid computes no KLoM, or None when it does."""
    if ensemble >= MIN_MEMBERS and seeds >= MIN_SEEDS:
        return None
    return (
        f"KLoM not computed: it needs at least {MIN_SEEDS} method seeds and oracle.ensemble >= {MIN_MEMBERS} "
        f"(this grid: {_plural(seeds, 'seed')}, oracle.ensemble = {ensemble})"
    )


def write_floor_margins(out: Path, k: int, floor: list[OracleOutputs], dataset: Dataset) -> None:
    """The floor models' margins of request k on the samples of the members' file, in its layout."""
    ids, _ = zip(*read_margins(member_margins_path(out, k)).values(), strict=True)
    by_split = dict(zip(SPLITS, ids, strict=True))
    margins = {}
    for name, split_ids in by_split.items():
        test = name == "test"
        labels = (dataset.y_test if test else dataset.y_train).cpu()[torch.from_numpy(split_ids)].numpy()
        logits = np.stack(
            [(f.logits_test if test else f.logits_train)[torch.from_numpy(split_ids)].numpy() for f in floor]
        )
        margins[name] = correct_class_margin(logits, labels)
    write_margins(floor_margins_path(out, k), by_split, margins)


def _splits(margins: dict[str, tuple[np.ndarray, np.ndarray]], forget_ids: np.ndarray | None) -> dict[str, np.ndarray]:
    """KLoM's splits of one margins file, as [models x samples] (a run's (n,) becomes [1 x n])."""

    def rows(name: str) -> np.ndarray:
        # float16 keeps margins up to 65504 and stores one past it as infinite; KLoM clips at ±CLIP anyway
        return np.clip(np.atleast_2d(margins[name][1]), -CLIP, CLIP)

    out = {"retain": np.concatenate([rows("remain"), rows("learn")], axis=1), "test": rows("test")}
    if forget_ids is not None:
        out["forget"] = rows("unlearn")[:, np.isin(margins["unlearn"][0], forget_ids)]
    return out


def klom_frames(
    out: Path, rows: pd.DataFrame, methods: list[str], scenario: Scenario, requests: list[int], estimator: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per request, summary): KLoM of every method at every scored request in ``requests`` and pooled over them,
    per split, each beside its floor. Reads the margins the runs wrote and :func:`write_floor_margins` wrote."""
    runs = rows[["method", "seed", "run_id"]].drop_duplicates().sort_values(["method", "seed"])
    run_ids = {m: list(runs.loc[runs.method == m, "run_id"]) for m in methods}
    per_request, pooled = [], {split: {"oracle": [], "floor": [], **{m: [] for m in methods}} for split in KLOM_SPLITS}
    for k in requests:
        request = scenario.requests[k]
        forget = request.ids.numpy() if request.kind == "unlearn" else None
        sides = {
            "oracle": _splits(read_margins(member_margins_path(out, k)), forget),
            "floor": _splits(read_margins(floor_margins_path(out, k)), forget),
        }
        for m in methods:
            seeds = [_splits(read_margins(run_margins_path(out, r, k)), forget) for r in run_ids[m]]
            sides[m] = {split: np.concatenate([s[split] for s in seeds]) for split in seeds[0]}
        for split in KLOM_SPLITS:
            if split not in sides["oracle"] or sides["oracle"][split].shape[1] == 0:
                continue
            for side, values in sides.items():
                pooled[split][side].append(values[split])
            grid = klom_grid(
                {m: sides[m][split] for m in methods}, sides["oracle"][split], sides["floor"][split], estimator
            )
            per_request.append(
                grid.assign(request=k, kind=request.kind, split=split, n_samples=sides["oracle"][split].shape[1])
            )
    summary = []
    for split, sides_of in pooled.items():
        if not sides_of["oracle"]:
            continue
        joined = {side: np.concatenate(values, axis=1) for side, values in sides_of.items()}
        grid = klom_grid({m: joined[m] for m in methods}, joined["oracle"], joined["floor"], estimator)
        summary.append(
            grid.assign(split=split, n_requests=len(sides_of["oracle"]), n_samples=joined["oracle"].shape[1])
        )
    return (
        _leading(pd.concat(per_request, ignore_index=True), ["request", "kind", "split", "n_samples"]),
        _leading(pd.concat(summary, ignore_index=True), ["split", "method"]),
    )


def _leading(frame: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    """The columns that say what a row is, first."""
    return frame[first + [c for c in frame.columns if c not in first]]


def klom_section(summary: pd.DataFrame, note: str | None) -> str:
    """comparison.md's and the study summary's KLoM section: the table, or the line saying why there is none."""
    if summary.empty:
        return f"## KLoM\n\n{note}\n"
    counts = summary.groupby("split")[["n_requests", "n_samples"]].first()
    splits = "; ".join(
        f"{split} ({SPLIT_MEANING[split]}): {int(counts.loc[split, 'n_samples'])} samples over "
        f"{_plural(int(counts.loc[split, 'n_requests']), 'scored request')}"
        for split in KLOM_SPLITS
        if split in counts.index
    )
    intro = f"Each split pooled over the scored requests, per request in klom.csv. {splits}."
    return f"## KLoM\n\n{intro}\n\n{markdown(summary)}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


__all__ = ["KLOM_SPLITS", "floor_count", "klom_frames", "klom_section", "why_no_klom", "write_floor_margins"]
