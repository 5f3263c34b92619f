"""`make results` rebuilds every quoted number from bench/results alone, and a changed record fails the check.

The whole rebuild runs once here (it must stay well under the 2 minutes the issue allows: its time is asserted);
the altered-record cases rebuild only the study whose record they change, into a copy of bench/results that
already holds every other study's derived files, so the blocks still render.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _make_results():
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "bench" / "make_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mr = _make_results()


def test_the_committed_tree_rebuilds_to_itself(tmp_path, capsys):
    start = time.perf_counter()
    code = mr.main(["--check", "--out", str(tmp_path)])
    seconds = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "every block and derived file is as committed" in printed
    for study in mr.STUDIES:
        assert f"{study}: " in printed  # each study's time
    assert (tmp_path / "sampler-study-summary.json").is_file()
    assert (tmp_path / "attacks-digits-rigorous" / "attacks.json").is_file()
    assert seconds < 100, f"the whole rebuild took {seconds:.0f} s"  # the issue allows 2 minutes


@pytest.fixture
def results_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(mr.RESULTS, copy)
    return copy


def test_an_altered_sampler_record_fails_the_check_naming_its_blocks(results_copy):
    # ugclu's best TPE sweep at seed 0 finds a far better point: its final hypervolume, the medians and the test move
    record = results_copy / "sampler-study-history" / "ugclu-tpe-0-convergence.csv"
    frame = pd.read_csv(record)
    complete = frame.index[frame["complete"]][-1]
    frame.loc[complete, ["objective_kl_oracle_all", "objective_avg_gap"]] = [0.01, 0.001]
    frame.to_csv(record, index=False)
    differences = mr.make(
        results_copy, results_copy, check=True, studies=["bench/sampler_study.py"], log=lambda _: None
    )
    assert any(line.startswith("README.md: block sampler-study-finding: line ") for line in differences), differences
    assert any(line.startswith("docs/search.md: block sampler-study-measured: line ") for line in differences)
    assert any(line.startswith("sampler-study.md: line ") for line in differences)
    assert any(line.startswith("sampler-study-summary.json: line ") for line in differences)


def test_an_altered_attack_record_fails_the_check_naming_its_blocks(results_copy):
    # one ugclu run's forget AUC at every request moves far from chance: the table's cell and the finding change
    parquet = results_copy / "attacks-digits-rigorous" / "results.parquet"
    rows = pd.read_parquet(parquet)
    rows.loc[(rows["method"] == "ugclu") & (rows["seed"] == 0), "ulira_auc"] = 0.9
    rows.to_parquet(parquet)
    differences = mr.make(
        results_copy, results_copy, check=True, studies=["bench/attacks_table.py"], log=lambda _: None
    )
    assert any(line.startswith("docs/benchmarks.md: block attacks-table: line ") for line in differences), differences
    assert any(line.startswith("README.md: block attacks-finding: line ") for line in differences)
    assert any(line.startswith("attacks-digits-rigorous/attacks.json: line ") for line in differences)


def test_an_unknown_block_is_a_one_line_error(tmp_path):
    env = mr.environment(tmp_path)
    with pytest.raises(mr.ResultsError, match=r"^notes.md: block 'no-such-study' has no template"):
        mr.render_blocks("<!-- results:no-such-study -->\nx\n<!-- /results:no-such-study -->\n", "notes.md", env)
    with pytest.raises(mr.ResultsError, match=r"has no closing"):
        mr.render_blocks("<!-- results:attacks-table -->\nx\n", "notes.md", env)


def test_fmt_keeps_significant_figures_without_exponents():
    assert [mr.fmt(x) for x in (0.004491, 0.09397, 0.5, 1.757, 17820.4, 0.0)] == [
        "0.00449",
        "0.0940",
        "0.500",
        "1.76",
        "17820",
        "0",
    ]
    assert mr.fmt(-0.0004985, 2) == "-0.00050"
