"""``clutune aggregate`` on constructed compare folders whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

import clutune
from clutune.cli import main
from clutune.errors import UserError
from clutune.platform.reports.aggregate import aggregate

FLOORS = (0.01, 0.1, 1.0, 0.5)  # per scenario: four orders of magnitude apart, so only a normalised score compares
SEEDS = (0, 1)
B_SCORES = np.arange(1.0, 9.0).reshape(len(FLOORS), len(SEEDS))  # scenario i, seed j: score 1 .. 8


def _folder(path, floor, b_scores, methods=("retrain", "a", "b")):
    """A compare folder: three requests per run, whose KL means are floor (retrain), 2 x floor (a) and the given
    multiples of the floor (b); requests scored unevenly so the run's mean is over scored requests only."""
    records = []
    for method in methods:
        for j, seed in enumerate(SEEDS):
            target = {"retrain": floor * (1.0 + (0.1 if j == 0 else -0.1)), "a": 2 * floor, "b": b_scores[j] * floor}[
                method
            ]
            for r, value in enumerate((target * 0.5, np.nan, target * 1.5)):
                records.append(
                    {"method": method, "seed": seed, "run_id": f"{method}-{seed}", "request": r, "kl_oracle_all": value}
                )
    path.mkdir(parents=True)
    pd.DataFrame.from_records(records).to_parquet(path / "results.parquet")
    return path


@pytest.fixture
def folders(tmp_path):
    return [_folder(tmp_path / f"scenario{i}", floor, B_SCORES[i]) for i, floor in enumerate(FLOORS)]


def test_aggregate_gives_the_known_iqm_interval_and_profile(folders, tmp_path):
    out = tmp_path / "agg"
    assert main(["aggregate", *map(str, folders), "--out", str(out)]) == 0
    table = pd.read_csv(out / "aggregate.csv").set_index("method")
    # retrain's floor is the mean of its runs, so its own scores are 1.1 and 0.9 in every scenario
    assert table.loc["retrain", "iqm"] == pytest.approx(1.0)
    assert table.loc["a", "iqm"] == pytest.approx(2.0)
    assert (table.loc["a", "lo"], table.loc["a", "hi"]) == (pytest.approx(2.0), pytest.approx(2.0))
    # b's eight scores are 1..8: the IQM drops the lowest and highest quarter, mean(3, 4, 5, 6)
    assert table.loc["b", "iqm"] == pytest.approx(4.5) == stats.trim_mean(np.arange(1, 9), 0.25)
    assert table.loc["b", "lo"] < 4.5 < table.loc["b", "hi"]
    assert 2.0 <= table.loc["b", "lo"] and table.loc["b", "hi"] <= 7.0  # a trimmed mean of resampled 1..8
    assert list(table.index) == ["retrain", "a", "b"] and set(table["runs"]) == {8} and set(table["scenarios"]) == {4}
    scores = pd.read_csv(out / "scores.csv")
    b = scores[scores["method"] == "b"].sort_values(["floor", "seed"])
    assert sorted(b["score"].round(9)) == list(range(1, 9))
    with Image.open(out / "performance_profile.png") as img:
        assert img.format == "PNG"
    assert "| a | 2 | [2, 2] |" in (out / "aggregate.md").read_text()
    # the same from Python, without writing anything: the table equals the file the command wrote
    again = clutune.aggregate(folders)
    pd.testing.assert_frame_equal(again.table.set_index("method"), table, check_dtype=False)


def test_the_profile_is_the_share_of_runs_at_or_below_tau(folders):
    result = aggregate(folders, reps=200)
    a = result.profile[result.profile["method"] == "a"]
    assert (a.loc[a["tau"] < 2.0, "share"] == 0).all() and (a.loc[a["tau"] > 2.0, "share"] == 1).all()
    b = result.profile[result.profile["method"] == "b"]
    for tau, share in zip(b["tau"], b["share"], strict=True):
        assert share == pytest.approx(np.mean(np.arange(1, 9) <= tau))


def test_a_folder_without_a_retrain_run_is_refused_before_any_output(folders, tmp_path, capsys):
    bare = _folder(tmp_path / "no-floor", 0.2, [1.0, 2.0], methods=("a", "b"))
    out = tmp_path / "agg"
    assert main(["aggregate", *map(str, folders), str(bare), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-floor has no retrain run" in err[0]
    assert not out.exists()
    with pytest.raises(UserError, match="holds no results.parquet"):
        aggregate([tmp_path / "nowhere"])


def test_a_method_missing_from_a_scenario_is_left_out_and_said(folders, tmp_path):
    partial = _folder(tmp_path / "partial", 0.3, [1.0, 1.0], methods=("retrain", "a"))
    result = aggregate([*folders, partial], reps=200)
    assert set(result.table["method"]) == {"retrain", "a"} and result.skipped == ["b"]


def test_the_committed_baseline_aggregate_is_what_its_committed_runs_give():
    """README's baseline aggregate is recomputed from the committed runs of the eight comparison tables."""
    from pathlib import Path

    from clutune.platform.reports.aggregate import markdown

    results = Path(__file__).resolve().parents[1] / "bench" / "results"
    folders = sorted((results / "compare-runs").iterdir())
    assert len(folders) == 8
    assert markdown(aggregate(folders)) == (results / "aggregate" / "aggregate.md").read_text()
