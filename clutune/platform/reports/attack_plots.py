"""The report's figures of the attacks (docs/attacks.md), drawn from the files a compare or study leaves behind.

U-LiRA's ROC curves come from each run's saved likelihood ratios (``ulira/<run_id>/request-<k>.npz``), one
curve per method with the forget set against the test samples of its classes, pooled over the method's runs and
attacked requests. The axes are log-log, as in the LiRA papers: an attack matters where it catches members at
few false positives, and a linear plot squeezes that corner into a few pixels; the TPR at 1% FPR is marked.

The ε histogram comes from ``epsilon_examples.csv``: each method's per-sample ε beside the same score of exact
retrains (the ceiling), since at a grid's counts even an exact retrain's ε is far from 0.

A figure whose files are absent is not drawn: a folder without the attacks gets no figure and no error. The
folder is read as received (:class:`clutune.guards.received_folder.ReceivedFolder`) and never written: the figures
go to the report's scratch folder and into the page.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clutune.core.epsilon import BUCKET_WIDTH, EPSILON_CAP
from clutune.core.shadows import SCORES_DIR, read_attack_scores
from clutune.core.ulira import FPR_POINTS, auc, roc, tpr_at
from clutune.guards.received_folder import ReceivedFolder
from clutune.platform.reports.epsilon_report import CEILING
from clutune.platform.reports.plots import DPI, MARGINS, PLOT_PX, no_values, save_figure

ROC_PLOT = "ulira_roc.png"
EPSILON_PLOT = "epsilon_histogram.png"
ATTACK_PLOTS = (ROC_PLOT, EPSILON_PLOT)
PANELS_PER_ROW = 4  # the histogram's panels per row: more would squeeze each below a readable width


def _figure(ncols: int, nrows: int = 1) -> tuple[Any, Any]:
    """A bare Figure at the report's width (:mod:`clutune.platform.reports.plots`), ``nrows`` x ``ncols`` panels
    (flattened), each row as tall as the report's plots."""
    fig = Figure(figsize=(PLOT_PX[0] / DPI, nrows * PLOT_PX[1] / DPI), dpi=DPI)
    fig.subplots_adjust(**{**MARGINS, "top": 1 - 0.15 / nrows, "wspace": 0.3, "hspace": 0.45})  # room for a suptitle
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def attack_scores(folder: ReceivedFolder, rows: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per method, (forget, forget_test) likelihood ratios of all its runs and attacked requests; the runs of
    ``rows`` only, so a scores folder left by an earlier grid in the same folder is never mixed in."""
    method_of = rows.drop_duplicates("run_id").set_index("run_id")["method"].astype(str)
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for run_id, method in method_of.items():
        found = folder.entries(f"{SCORES_DIR}/{run_id}")
        for path in sorted(p for p in found if p.name.startswith("request-") and p.suffix == ".npz" and p.is_file()):
            scores = read_attack_scores(path)
            forget, test = pooled.setdefault(method, ([], []))
            forget.append(scores["forget"])
            test.append(scores["forget_test"])
    return {m: (np.concatenate(f), np.concatenate(t)) for m, (f, t) in sorted(pooled.items())}


def roc_figure(scores: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """The forget set's ROC per method on log-log axes, chance's diagonal, each TPR at 1% FPR marked."""
    fig, (ax,) = _figure(1)
    fpr_mark = FPR_POINTS[0]
    smallest = min(len(t) for _, t in scores.values())
    low = min(fpr_mark / 2, 0.5 / max(smallest, 1))  # one false positive among the fewest test samples
    ax.plot([low, 1], [low, 1], color="grey", lw=0.8, ls="--", label="chance")
    ax.axvline(fpr_mark, color="grey", lw=0.5, ls=":")
    for method, (forget, test) in scores.items():
        fpr, tpr = roc(forget, test)
        at = tpr_at(forget, test, fpr_mark)
        label = f"{method}: AUC {auc(forget, test):.3f}, TPR {at:.3f} at {fpr_mark:.0%} FPR"
        (line,) = ax.plot(np.maximum(fpr, low), np.maximum(tpr, low), lw=1.2, label=label)
        ax.plot([fpr_mark], [max(at, low)], marker="o", markersize=6, color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, 1)
    ax.set_ylim(low, 1.05)
    ax.set_xlabel(f"false positive rate on the test samples of the forget set's classes (floor {low:.2g})")
    ax.set_ylabel("true positive rate on the forget set")
    ax.set_title("U-LiRA on the forget set, per method (pooled over runs and attacked requests)")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def epsilon_figure(examples: pd.DataFrame, path: Path, limit: float | None) -> Path:
    """One panel per method: its per-sample ε beside the retrain ceiling's, in the competition's buckets; the
    capped samples (perfect separation, ε = 50) go in the last bar so the axis stays readable."""
    methods = sorted(m for m in examples["method"].astype(str).unique() if m != CEILING)
    ceiling = examples.loc[examples["method"] == CEILING, "epsilon"].to_numpy(dtype=float)
    finite = examples.loc[examples["epsilon"] < EPSILON_CAP, "epsilon"].to_numpy(dtype=float)
    top = max(math.ceil((finite.max() if len(finite) else 0.0) / BUCKET_WIDTH) * BUCKET_WIDTH, limit or 0.0)
    top += BUCKET_WIDTH  # the last bar: ε past the largest uncapped value, the cap included
    edges = np.arange(0.0, top + BUCKET_WIDTH / 2, BUCKET_WIDTH)
    ncols = min(max(len(methods), 1), PANELS_PER_ROW)
    fig, axes = _figure(ncols, math.ceil(max(len(methods), 1) / ncols))
    for ax, method in zip(axes, methods, strict=False):
        mine = examples.loc[examples["method"] == method, "epsilon"].to_numpy(dtype=float)
        sides = [np.minimum(mine, top - BUCKET_WIDTH / 2), np.minimum(ceiling, top - BUCKET_WIDTH / 2)]
        ax.hist(sides, bins=edges, label=["the method", CEILING] if len(ceiling) else ["the method", "(no ceiling)"])
        if limit is not None:
            ax.axvline(limit, color="grey", lw=0.8, ls="--", label=f"bucket limit {limit:g}: beyond, 0 points")
        ax.set_title(method, fontsize=9)
    for ax in axes[len(methods) :]:
        ax.set_visible(False)
    if not methods:
        axes[0].set_visible(True)
        no_values(axes[0], "epsilon_examples.csv holds no method's ε")
    else:
        axes[0].legend(fontsize=7)
    axes[0].set_ylabel("forget samples")
    last = f"last bar: ≥ {top - BUCKET_WIDTH:g}, the cap {EPSILON_CAP:g} included"
    fig.supxlabel(f"ε per forget sample ({last})", fontsize=9)
    fig.suptitle("ε score per forget sample: each method beside exact retrains at the same counts (the ceiling)")
    return save_figure(fig, path)


def attack_plots(folder: ReceivedFolder, rows: pd.DataFrame, plots: Path) -> list[Path]:
    """The attack figures a folder's files allow, written into ``plots``; none where the files are absent."""
    out = []
    scores = attack_scores(folder, rows)
    if scores:
        out.append(roc_figure(scores, plots / ROC_PLOT))
    examples_csv = folder.file("epsilon_examples.csv")
    if examples_csv is not None:
        examples = pd.read_csv(examples_csv)
        if not examples.empty:
            out.append(epsilon_figure(examples, plots / EPSILON_PLOT, _bucket_limit(folder)))
    return out


def _bucket_limit(folder: ReceivedFolder) -> float | None:
    """Where the buckets stop (from ``epsilon_summary.csv``), or None when that file is absent."""
    summary = folder.file("epsilon_summary.csv")
    if summary is None:
        return None
    limits = pd.read_csv(summary).get("bucket_limit")
    return float(limits.max()) if limits is not None and limits.notna().any() else None


__all__ = ["ATTACK_PLOTS", "attack_plots", "attack_scores", "epsilon_figure", "roc_figure"]
