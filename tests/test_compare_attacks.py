"""The attacks in a compare: the cost in the first line, U-LiRA's columns in the table, and the ε score beside
its ceiling, where an exact retrain sits at its ceiling and a method that never forgot far below."""

from __future__ import annotations

import pandas as pd
import pytest

import clutune

STREAM = """
name: attacks
dataset: {name: digits}
model: {name: mlp, hidden: [32]}
oracle: {epochs: 15, policy: unlearn, ensemble: 8, cache_dir: CACHE}
device: cpu
probe_size: 0
scenario:
  seed: 0
  requests:
    - learn: {tasks: [0, 1, 2]}
    - unlearn: {fraction: 0.2}
evaluation:
  ulira: {shadows: 4}
  epsilon: {enabled: true, bootstrap: 200}
"""


@pytest.mark.slow
def test_compare_reports_ulira_and_the_epsilon_score_beside_its_ceiling(local_ray, tmp_path):
    config = tmp_path / "attacks.yaml"
    config.write_text(STREAM.replace("CACHE", str(tmp_path / "oracles")))
    lines: list[str] = []
    result = clutune.compare(
        str(config),
        methods=["finetune", "retrain"],
        seeds=[100, 101, 102],
        out=tmp_path / "c",
        overrides=["epochs_per_learn=1", "methods.finetune.unlearn_lr=0"],
        tracking=False,
        log=lines.append,
    )
    assert lines[0].startswith("U-LiRA: 4 shadow models")
    assert "ulira_auc" in result.table.columns.get_level_values(0)
    summary = pd.read_csv(tmp_path / "c" / "epsilon_summary.csv").set_index("method")
    assert (summary.n_runs == 3).all() and (summary.n_members == 8).all() and (summary.bucket_limit == 1).all()
    retrain, kept = summary.loc["retrain"], summary.loc["finetune"]
    assert retrain.ratio_lo <= 1 <= retrain.ratio_hi
    assert kept.f_over_ceiling < retrain.f_over_ceiling
    examples = pd.read_csv(tmp_path / "c" / "epsilon_examples.csv")
    assert set(examples.method) == {"finetune", "retrain", "retrain ceiling"}
    assert "## ε score" in (tmp_path / "c" / "comparison.md").read_text()
