"""Study report on a synthetic results frame whose final values and slopes are known by construction."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from clutune.platform.reports.study_report import DPI, FIG_INCHES, plot_curves, summary_frame, summary_markdown

N_REQUESTS = 40


def _rows(methods=("ugclu", "finetune"), seeds=(0, 1), n_requests=N_REQUESTS, oracle_every=5) -> pd.DataFrame:
    """Linear curves per seed; the oracle runs every ``oracle_every`` requests but not at the last one."""
    records = []
    for k, method in enumerate(methods):
        for s in seeds:
            for r in range(n_requests):
                learn = r % 2 == 0
                evaluated = r % oracle_every == 0 and r != n_requests - 1
                records.append(
                    {
                        "method": method,
                        "seed": s,
                        "request": r,
                        "kind": "learn" if learn else "unlearn",
                        "oracle_evaluated": evaluated,
                        "kl_oracle_all": 0.1 * s + 0.01 * r + k if evaluated else math.nan,
                        "acc_remain": 0.9 - 0.001 * r + 0.02 * s,
                        "forgetting": 0.001 * r,
                        "acc_learn": 0.8 + 0.01 * s - 0.002 * r if learn else math.nan,
                        "oracle_acc_learn": 0.85 if learn else math.nan,
                        # a wild first half must not move the slope, which reads the last half only
                        "dead_units": (0.5 if r % 3 else 0.0) if r < n_requests // 2 else 0.002 * r + 0.01 * s,
                        "weight_magnitude": 1.0 + 0.005 * r * (s + 1),
                        "effective_rank": 10.0 - 0.05 * r - k,
                    }
                )
    return pd.DataFrame.from_records(records)


def test_plot_is_a_valid_png_of_the_set_size(tmp_path):
    path = tmp_path / "curves.png"
    plot_curves(_rows(), path)
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (int(FIG_INCHES[0] * DPI), int(FIG_INCHES[1] * DPI))
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 1


def test_a_long_stream_plots_dense_curves_plain_and_sparse_oracle_points_marked(tmp_path):
    n = 1000
    rows = _rows(methods=("ugclu", "finetune", "er"), seeds=(0, 1, 2), n_requests=n, oracle_every=50)
    fig = plot_curves(rows, tmp_path / "long.png")
    panels = {ax.get_ylabel(): ax for ax in fig.axes if ax.get_ylabel()}
    for metric in ("acc_remain", "dead_units", "effective_rank"):  # one point per request: lines, no markers
        lines = [line for line in panels[metric].get_lines() if not line.get_label().startswith("_")]
        assert sorted(line.get_label() for line in lines) == ["er", "finetune", "ugclu"]
        assert all(len(line.get_xdata()) == n and line.get_marker() in ("None", None, "") for line in lines)
    marked = [line for line in panels["kl_oracle_all"].get_lines() if line.get_marker() == "o"]
    assert len(marked) == 3 and all(len(line.get_xdata()) == n // 50 for line in marked)  # every oracle point


def test_summary_matches_hand_computed_finals_and_slopes():
    table = summary_frame(_rows()).set_index(["method", "metric"]).loc["ugclu"]

    kl = table.loc["kl_oracle_all"]  # request 39 has no oracle: the final value is at 35
    assert kl["final_request"] == 35
    assert kl["final_mean"] == pytest.approx(statistics.mean([0.35, 0.45]))
    assert kl["final_std"] == pytest.approx(statistics.stdev([0.35, 0.45]))
    assert kl["slope_mean"] == pytest.approx(0.01)

    wm = table.loc["weight_magnitude"]
    finals = [1.0 + 0.005 * 39 * (s + 1) for s in (0, 1)]
    assert wm["final_request"] == 39
    assert wm["final_mean"] == pytest.approx(statistics.mean(finals))
    assert wm["final_std"] == pytest.approx(statistics.stdev(finals))
    assert wm["slope_mean"] == pytest.approx(0.0075)
    assert wm["slope_std"] == pytest.approx(statistics.stdev([0.005, 0.010]))

    assert table.loc["dead_units", "slope_mean"] == pytest.approx(0.002)
    assert table.loc["acc_remain", "slope_mean"] == pytest.approx(-0.001)
    assert table.loc["effective_rank", "final_mean"] == pytest.approx(10.0 - 0.05 * 39)


def test_summary_markdown_reports_the_numbers_per_method():
    text = summary_markdown(_rows())
    assert "40 requests, 2 seeds per method (0, 1)" in text
    assert "### ugclu" in text and "### finetune" in text
    assert "| metric | final value | at request | drift slope per request (last half) |" in text
    finals = [1.0 + 0.005 * 39 * (s + 1) for s in (0, 1)]
    half = stats.t.ppf(0.975, 1) * statistics.stdev(finals) / math.sqrt(2)
    final_cell = f"{statistics.mean(finals):.4g} ± {half:.2g} (2 of 2 seeds)"
    slope_half = stats.t.ppf(0.975, 1) * statistics.stdev([0.005, 0.010]) / math.sqrt(2)
    slope_cell = f"{0.0075:.4g} ± {slope_half:.2g} (2 of 2 seeds)"
    ugclu = text.split("### ugclu")[1]
    assert f"| weight_magnitude | {final_cell} | 39 | {slope_cell} |" in ugclu


def test_a_study_of_one_seed_gives_plain_values_without_seed_counts():
    text = summary_markdown(_rows(seeds=(0,)))
    cells = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(cells) > 10 and not any("(n=" in c or "seed" in c or "± " in c for c in cells), cells
    finals = text.split("## Final values and drift per method")[1]
    assert "the one seed's value" in finals
    row = next(line for line in finals.split("### ugclu")[1].splitlines() if line.startswith("| acc_remain |"))
    assert row.startswith(f"| acc_remain | {0.9 - 0.001 * (N_REQUESTS - 1):.4g} | {N_REQUESTS - 1} | ")
