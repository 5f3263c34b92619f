"""Figures of sparse series (an ``every_k`` oracle policy scores 1 request in 10): every finite point is drawn.

The check reads the matplotlib artists' data, not pixels: a point counts as drawn when a visible line carries it
with a marker, or a line segment joins it to a finite neighbour.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from clutune.platform.reports.plots import method_figures, run_figures
from clutune.platform.reports.study_report import plot_curves

N = 200
EVERY = 10


def _rows(methods=("ugclu", "er"), seeds=(0, 1)) -> pd.DataFrame:
    """Dense accuracy, and oracle metrics finite only at every 10th request (request 0, 10, ..., 190)."""
    records = []
    for m, method in enumerate(methods):
        for s in seeds:
            for r in range(N):
                scored = r % EVERY == 0
                kl = 0.1 + 0.001 * r + 0.01 * s + m if scored else math.nan
                records.append(
                    {
                        "run_id": f"{method}-s{s}",
                        "method": method,
                        "seed": s,
                        "request": r,
                        "kind": "learn" if r % 2 == 0 else "unlearn",
                        "oracle_evaluated": scored,
                        **{f"kl_oracle_{p}": kl for p in ("all", "remain", "learn", "unlearn", "test")},
                        **{
                            g: (0.01 * m + 0.0001 * r if scored else math.nan)
                            for g in ("gap_remain", "gap_learn", "gap_unlearn", "gap_test", "avg_gap")
                        },
                        "acc_test": 0.9 - 0.0001 * r,
                        "acc_remain": 0.95,
                        "acc_unlearn": 0.5,
                        "acc_learn": 0.8,
                        "oracle_acc_test": 0.9 if scored else math.nan,
                        "oracle_acc_learn": 0.85 if scored else math.nan,
                        "forgetting": 0.001 * r,
                        "mia_member_rate": math.nan,
                        "mia_efficacy": math.nan,
                        "dead_units": 0.1,
                        "weight_magnitude": 1.0,
                        "effective_rank": 10.0,
                    }
                )
    return pd.DataFrame.from_records(records)


def _drawn_points(ax) -> set[tuple[float, float]]:
    """Points a reader sees on ``ax``: those under a marker, and the ends of every finite line segment."""
    seen = set()
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        finite = np.isfinite(x) & np.isfinite(y)
        if line.get_marker() not in (None, "None", "", " "):
            seen |= {(float(a), round(float(b), 12)) for a, b in zip(x[finite], y[finite], strict=True)}
        if line.get_linestyle() not in ("None", "", " "):
            joined = finite[:-1] & finite[1:]
            for i in np.flatnonzero(joined):
                seen |= {(float(x[i]), round(float(y[i]), 12)), (float(x[i + 1]), round(float(y[i + 1]), 12))}
    return seen


def _expected(frame: pd.DataFrame, column: str) -> set[tuple[float, float]]:
    stats = frame.groupby("request")[column].mean().dropna()
    return {(float(r), round(float(v), 12)) for r, v in stats.items()}


def test_every_finite_point_of_a_run_is_drawn():
    rows = _rows()
    run = rows[rows["run_id"] == "ugclu-s0"]
    figures = run_figures(run, "ugclu")
    (kl_ax,) = [a for a in figures["kl_oracle.png"].axes if a.get_title()]
    (gap_ax,) = [a for a in figures["gaps.png"].axes if a.get_title()]
    drawn_kl, drawn_gap = _drawn_points(kl_ax), _drawn_points(gap_ax)
    expected = _expected(run, "kl_oracle_all")
    assert len(expected) == N // EVERY
    assert expected <= drawn_kl
    assert _expected(run, "avg_gap") <= drawn_gap
    # nothing invented between two scored requests: no line segment spans a gap
    assert all(x % EVERY == 0 for x, _ in drawn_kl)


def test_every_finite_mean_of_the_method_figures_is_drawn():
    rows = _rows()
    figures = method_figures(rows, "study")
    for name, column in (("methods_kl_oracle.png", "kl_oracle_all"), ("methods_gaps.png", "avg_gap")):
        (ax,) = [a for a in figures[name].axes if a.get_title() == column]
        drawn = _drawn_points(ax)
        for method, frame in rows.groupby("method"):
            assert _expected(frame, column) <= drawn, (name, method)


def test_a_panel_without_any_finite_value_says_so():
    rows = _rows()
    (mia,) = [a for a in method_figures(rows, "study")["methods_mia.png"].axes if a.get_title() == "mia_member_rate"]
    assert any("no finite mia_member_rate" in t.get_text() for t in mia.texts)
    empty = rows.assign(**{f"kl_oracle_{p}": math.nan for p in ("all", "remain", "learn", "unlearn", "test")})
    (kl_ax,) = [a for a in run_figures(empty[empty["run_id"] == "er-s1"], "er")["kl_oracle.png"].axes]
    assert any("no finite value" in t.get_text() for t in kl_ax.texts)


def test_study_curves_draw_every_oracle_point(tmp_path):
    rows = _rows()
    fig = plot_curves(rows, tmp_path / "curves.png")
    (kl_ax,) = [a for a in fig.axes if a.get_ylabel() == "kl_oracle_all"]
    drawn = _drawn_points(kl_ax)
    for method, frame in rows.groupby("method"):
        assert _expected(frame, "kl_oracle_all") <= drawn, method


def test_a_dense_series_with_gaps_keeps_its_isolated_points():
    from matplotlib.figure import Figure

    from clutune.platform.reports.plots import sparse_line

    y = np.linspace(0.0, 1.0, 100)
    y[[0, 2, 50, 52]] = np.nan  # points 1 and 51 have no finite neighbour
    ax = Figure().subplots()
    sparse_line(ax, np.arange(100), y)
    expected = {(float(i), round(float(v), 12)) for i, v in enumerate(y) if np.isfinite(v)}
    assert expected <= _drawn_points(ax)
    marked = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [list(line.get_xdata()) for line in marked] == [[1.0, 51.0]]  # only where no segment reaches
