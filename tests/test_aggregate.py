"""``clutune aggregate`` on constructed compare folders whose answer is known by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from recipes import load_bench
from scipy import stats

import clutune
from clutune.cli import main
from clutune.errors import UserError
from clutune.platform.reports.aggregate import aggregate, markdown

FLOORS = (0.01, 0.1, 1.0, 0.5)  # per scenario: four orders of magnitude apart, so only a normalised score compares
SEEDS = (0, 1)
B_SCORES = np.arange(1.0, 9.0).reshape(len(FLOORS), len(SEEDS))  # scenario i, seed j: score 1 .. 8


def _folder(path, floor, b_scores, methods=("retrain", "a", "b"), member_floors=None):
    """A compare folder: three requests per run, whose KL means are floor (retrain), 2 x floor (a) and the given
    multiples of the floor (b); requests scored unevenly so the run's mean is over scored requests only. With
    ``member_floors`` (the two scored requests' values) the rows carry an oracle ensemble's ``oracle_floor``."""
    records = []
    for method in methods:
        for j, seed in enumerate(SEEDS):
            target = {"retrain": floor * (1.0 + (0.1 if j == 0 else -0.1)), "a": 2 * floor, "b": b_scores[j] * floor}[
                method
            ]
            for r, value in enumerate((target * 0.5, np.nan, target * 1.5)):
                record = {"method": method, "seed": seed, "run_id": f"{method}-{seed}", "request": r}
                record["kl_oracle_all"] = value
                if member_floors is not None:
                    record["oracle_floor"] = np.nan if r == 1 else member_floors[r // 2]
                records.append(record)
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
    # a's runs sit at exactly 2 floors: its interval is the floor's uncertainty alone, each scenario's floor the
    # mean of two retrain runs at 1.1 and 0.9 of it, resampled
    assert 2 / 1.1 - 1e-9 <= table.loc["a", "lo"] < 2.0 < table.loc["a", "hi"] <= 2 / 0.9 + 1e-9
    # b's eight scores are 1..8: the IQM drops the lowest and highest quarter, mean(3, 4, 5, 6)
    assert table.loc["b", "iqm"] == pytest.approx(4.5) == stats.trim_mean(np.arange(1, 9), 0.25)
    assert table.loc["b", "lo"] < 4.5 < table.loc["b", "hi"]
    assert 2.0 / 1.1 <= table.loc["b", "lo"] and table.loc["b", "hi"] <= 7.0 / 0.9  # resampled 1..8, floors too
    assert list(table.index) == ["retrain", "a", "b"] and set(table["runs"]) == {8} and set(table["scenarios"]) == {4}
    scores = pd.read_csv(out / "scores.csv")
    b = scores[scores["method"] == "b"].sort_values(["floor", "seed"])
    assert sorted(b["score"].round(9)) == list(range(1, 9))
    with Image.open(out / "performance_profile.png") as img:
        assert img.format == "PNG"
    text = (out / "aggregate.md").read_text()
    assert "| a | 2 | [" in text and "| scenario0 | 0.01 | [0.009, 0.011] | retrain runs | 2 |" in text
    assert "A floor from retrain runs" in text and "Counted once" not in text
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


def test_the_interval_widens_when_member_noise_is_added(tmp_path):
    """Floors from oracle members (no retrain run needed): the same point values, but where the members' floor of
    each request scatters around the scenario's floor, the interval carries that scatter and is wider."""

    def folders(noise: float, tag: str):
        return [
            _folder(
                tmp_path / tag / f"scenario{i}",
                floor,
                B_SCORES[i],
                methods=("a", "b"),
                member_floors=(floor * (1 - noise), floor * (1 + noise)),
            )
            for i, floor in enumerate(FLOORS)
        ]

    exact, noisy = aggregate(folders(0.0, "exact")), aggregate(folders(0.3, "noisy"))
    a_exact, a_noisy = exact.table.set_index("method").loc["a"], noisy.table.set_index("method").loc["a"]
    assert a_exact["iqm"] == pytest.approx(2.0) == a_noisy["iqm"]
    assert a_exact["lo"] == pytest.approx(2.0) and a_exact["hi"] == pytest.approx(2.0)
    assert a_noisy["lo"] < 2.0 < a_noisy["hi"] and 2 / 1.3 - 1e-9 <= a_noisy["lo"] and a_noisy["hi"] <= 2 / 0.7 + 1e-9
    b_exact, b_noisy = exact.table.set_index("method").loc["b"], noisy.table.set_index("method").loc["b"]
    assert b_exact["iqm"] == pytest.approx(4.5) == b_noisy["iqm"]
    assert b_noisy["hi"] - b_noisy["lo"] > b_exact["hi"] - b_exact["lo"]
    assert set(noisy.floors["source"]) == {"oracle members"} and set(noisy.floors["n"]) == {2}
    np.testing.assert_allclose(noisy.floors["floor"], FLOORS)
    assert "A floor from retrain runs" not in markdown(noisy)


def test_runs_identical_in_two_folders_are_counted_once(tmp_path):
    """retrain and a give the same rows in both folders (as a method that ignores the buffer does in the b200 and
    b500 variant of a scenario); b does not. Each identical run counts once, and the table says so."""
    first = _folder(tmp_path / "s-b200", 0.1, [1.0, 3.0])
    second = _folder(tmp_path / "s-b500", 0.1, [2.0, 5.0])
    result = aggregate([first, second], reps=200)
    table = result.table.set_index("method")
    assert table.loc["a", "runs"] == 2 and table.loc["a", "scenarios"] == 1
    assert table.loc["b", "runs"] == 4 and table.loc["b", "scenarios"] == 2
    assert table.loc["b", "iqm"] == pytest.approx(stats.trim_mean([1.0, 2.0, 3.0, 5.0], 0.25))
    repeated = result.scores[result.scores["duplicate_of"] != ""]
    assert set(repeated["method"]) == {"retrain", "a"} and set(repeated["duplicate_of"]) == {"s-b200"}
    text = markdown(result)
    assert "- a: s-b500 = s-b200 (2 runs, not 4)" in text and "- retrain: s-b500 = s-b200 (2 runs, not 4)" in text


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


def test_the_committed_baseline_aggregate_is_what_its_committed_runs_give(tmp_path):
    """README's baseline aggregates are rebuilt from the committed runs of the eight comparison tables."""
    results = Path(__file__).resolve().parents[1] / "bench" / "results"
    assert len(list((results / "compare-runs").iterdir())) == 8
    rebuild = load_bench("aggregate_tables").rebuild
    rebuild(results, tmp_path)
    for name in ("aggregate", "aggregate-digits", "aggregate-mnist1d"):
        for file in ("aggregate.md", "aggregate.csv", "leave_one_out.csv"):
            assert (tmp_path / name / file).read_text() == (results / name / file).read_text(), f"{name}/{file}"
    assert (tmp_path / "aggregate-tables.json").read_text() == (results / "aggregate-tables.json").read_text()


def test_leave_one_scenario_out_shows_a_lead_that_rests_on_one_scenario(tmp_path):
    """b scores 0.5 in scenarios 0 and 1 and 3 in scenarios 2 and 3; a scores 2 everywhere. Over all four, b's
    IQM (1.75) is the lowest; without scenario 0 it is trim_mean(0.5, 3, 3, 3, 3, 0.5 ...) above 2, so b is
    second there; retrain is the exact floor and has no rank."""
    b = [[0.5, 0.5], [0.5, 0.5], [3.0, 3.0], [3.0, 3.0]]
    folders = [_folder(tmp_path / f"s{i}", floor, b[i]) for i, floor in enumerate(FLOORS)]
    out = tmp_path / "agg"
    result = clutune.aggregate(folders, out=out)
    loso = pd.read_csv(out / "leave_one_out.csv")
    assert list(loso.columns) == ["left_out", "method", "iqm", "rank"]
    rank = loso.pivot(index="method", columns="left_out", values="rank")
    iqm = loso.pivot(index="method", columns="left_out", values="iqm")
    assert iqm.loc["b", "(none)"] == pytest.approx(stats.trim_mean([0.5] * 4 + [3.0] * 4, 0.25))
    assert iqm.loc["b", "s0"] == pytest.approx(stats.trim_mean([0.5] * 2 + [3.0] * 4, 0.25)) and iqm.loc["b", "s0"] > 2
    assert iqm.loc["b", "s2"] == pytest.approx(stats.trim_mean([0.5] * 4 + [3.0] * 2, 0.25)) and iqm.loc["b", "s2"] < 2
    assert rank["(none)"].to_dict() == pytest.approx({"a": 2.0, "b": 1.0, "retrain": float("nan")}, nan_ok=True)
    assert (rank.loc["b", "s0"], rank.loc["b", "s1"], rank.loc["b", "s2"], rank.loc["b", "s3"]) == (2, 2, 1, 1)
    # the whole-set IQM is the table's
    assert iqm.loc["a", "(none)"] == pytest.approx(result.table.set_index("method").loc["a", "iqm"])
    text = (out / "aggregate.md").read_text()
    assert "| b | 1 | 2 | 2 | 1 | 1 |" in text and "| retrain | - |" in text
    verdict = "b is first with every scenario in, but not without s0 (rank 2), s1 (rank 2): the lead rests on those"
    assert verdict in text


def test_leave_one_out_counts_a_repeated_run_in_the_folder_that_remains(tmp_path):
    """a's runs are identical in both folders and counted in the first; with the first left out they count in
    the second, so a keeps its IQM rather than vanishing from the ranking."""
    first = _folder(tmp_path / "s-b200", 0.1, [1.0, 3.0])
    second = _folder(tmp_path / "s-b500", 0.1, [2.0, 5.0])
    loso = aggregate([first, second], reps=200).loso
    without_first = loso[loso["left_out"] == "s-b200"].set_index("method")
    assert without_first.loc["a", "iqm"] == pytest.approx(2.0)
    assert without_first.loc["b", "iqm"] == pytest.approx(stats.trim_mean([2.0, 5.0], 0.25))


def test_seeds_count_only_their_runs_so_unequal_folders_aggregate_on_the_seeds_they_share(folders, tmp_path, capsys):
    """Every folder gains a seed 2 (a copy of seed 0's runs); one loses b's seed-1 run. The aggregate refuses the
    unequal counts; with --seeds 0,2 every folder counts those two seeds, and b scores its seed-0 values."""
    for folder in folders:
        rows = pd.read_parquet(folder / "results.parquet")
        extra = rows[rows["seed"] == 0].assign(seed=2, run_id=lambda f: f["method"] + "-2")
        rows = pd.concat([rows, extra], ignore_index=True)
        if folder == folders[0]:
            rows = rows[~((rows["method"] == "b") & (rows["seed"] == 1))]
        rows.to_parquet(folder / "results.parquet")
    with pytest.raises(UserError, match="different numbers of runs per scenario"):
        aggregate(folders, reps=200)
    out = tmp_path / "agg"
    assert main(["aggregate", *map(str, folders), "--out", str(out), "--seeds", "0,2"]) == 0
    scores = pd.read_csv(out / "scores.csv")
    b = scores[scores["method"] == "b"].sort_values(["scenario", "seed"])
    assert set(scores["seed"]) == {0, 2} and len(b) == 2 * len(FLOORS)
    assert b["kl"].tolist() == pytest.approx(
        [v * f for f, v in zip(FLOORS, B_SCORES[:, 0], strict=True) for _ in (0, 2)]
    )
    capsys.readouterr()
    assert main(["aggregate", *map(str, folders), "--out", str(tmp_path / "x"), "--seeds", "0,7"]) == 2
    assert "has no run with seed 7" in capsys.readouterr().err
    assert main(["aggregate", *map(str, folders), "--out", str(tmp_path / "y"), "--seeds", "zero"]) == 2
    assert "expected integers" in capsys.readouterr().err and not (tmp_path / "y").exists()
