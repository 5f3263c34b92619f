"""KLoM in compare and study: floor models planned beside the members, klom.csv per request and split, the table
beside its floor in comparison.md, and one line saying why where the grid has one seed or one oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clutune
from clutune.core.margins import floor_margins_path, member_margins_path, read_margins
from clutune.core.oracle import OracleCache

# A digits-random-like stream: three tasks learned, then 20% of the owned samples unlearned at random; only the
# unlearn request scored. A shortened oracle recipe (15 epochs, 32 hidden units): retrain follows it.
STREAM = """
name: klom-stream
dataset: {name: digits}
model: {name: mlp, hidden: [32]}
oracle: {epochs: 15, policy: unlearn, cache_dir: CACHE}
device: cpu
probe_size: 0
scenario:
  seed: 0
  requests:
    - learn: {tasks: [0, 1, 2]}
    - unlearn: {fraction: 0.2}
"""
MEMBERS = 8  # the count bench/results/klom_power.md chose; at 3 members a side's normal fit is too unsteady to bound
SEEDS = [100, 101, 102]


@pytest.fixture
def stream(tmp_path) -> Path:
    path = tmp_path / "stream.yaml"
    path.write_text(STREAM.replace("CACHE", str(tmp_path / "oracles")))
    return path


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_a_compare_gives_klom_beside_its_floor_retrain_inside_it_and_finetune_above(local_ray, stream, tmp_path):
    out = tmp_path / "c"
    result = clutune.compare(
        str(stream),
        methods=["finetune", "retrain"],
        seeds=SEEDS,
        out=out,
        overrides=["epochs_per_learn=1", f"oracle.ensemble={MEMBERS}"],
        tracking=False,
        log=lambda line: None,
    )
    # one oracle (member 0), 7 more members and 3 floor models, each cached on its own
    assert result.oracles_trained == MEMBERS + len(SEEDS)
    assert len(OracleCache(tmp_path / "oracles").entries()) == MEMBERS + len(SEEDS)
    members, floor = read_margins(member_margins_path(out, 1)), read_margins(floor_margins_path(out, 1))
    assert floor["unlearn"][1].shape[0] == len(SEEDS) and members["unlearn"][1].shape[0] == MEMBERS
    for split in ("remain", "unlearn", "test"):
        np.testing.assert_array_equal(floor[split][0], members[split][0])
        assert not any(np.array_equal(f, m) for f in floor[split][1] for m in members[split][1])

    per_request = pd.read_csv(out / "klom.csv")
    assert set(per_request.request) == {1}  # the one scored request
    assert sorted(zip(per_request.split, per_request.method, strict=True)) == sorted(
        (s, m) for s in ("forget", "retain", "test") for m in ("finetune", "retrain")
    )
    rows = result.rows[result.rows.request == 1].iloc[0]
    n = per_request.groupby("split").n_samples.first()
    assert n["forget"] == rows.n_unlearn and n["retain"] == rows.n_owned and n["test"] == 450
    assert (per_request.n_method == len(SEEDS)).all() and (per_request.n_oracle == MEMBERS).all()

    klom = result.klom.set_index(["split", "method"])
    assert not klom.loc[("forget", "retrain"), "above_floor"]
    assert klom.loc[("forget", "retrain"), "klom_mean_lo"] <= klom.loc[("forget", "retrain"), "floor_mean_hi"]
    assert klom.loc[("forget", "finetune"), "above_floor"]
    assert klom.loc[("forget", "finetune"), "klom_mean"] > 10 * klom.loc[("forget", "finetune"), "floor_mean"]
    assert (klom.estimator == "normal").all()
    text = (out / "comparison.md").read_text()
    assert "## KLoM" in text and "| split | method | klom | klom p95 | klom_floor |" in text
    assert "| forget | finetune |" in text and "▲" in text and "≈" in text
    assert "kl_over_floor" in text and "oracle_floor" in text  # the ensemble columns in the main table


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_one_seed_or_one_member_computes_no_klom_and_says_why(local_ray, stream, tmp_path):
    fast = ["epochs_per_learn=1", "oracle.epochs=2"]
    lines: list[str] = []
    one_seed = clutune.compare(
        str(stream),
        methods=["finetune"],
        seeds=[0],
        out=tmp_path / "one-seed",
        overrides=[*fast, "oracle.ensemble=2"],
        tracking=False,
        log=lines.append,
    )
    assert one_seed.klom.empty
    line = "KLoM not computed: it needs at least 2 method seeds and oracle.ensemble >= 2 (this grid: 1 seed, "
    assert one_seed.klom_note == line + "oracle.ensemble = 2)" and one_seed.klom_note in lines
    assert one_seed.klom_note in (tmp_path / "one-seed" / "comparison.md").read_text()
    assert not (tmp_path / "one-seed" / "klom.csv").exists()
    assert not (tmp_path / "one-seed" / "margins" / "floor").exists()

    one_member = clutune.study(
        str(stream),
        methods=["finetune"],
        seeds=[0, 1],
        out=tmp_path / "one-member",
        overrides=fast,
        tracking=False,
        log=lambda line: None,
    )
    assert one_member.klom.empty and one_member.klom_note == line.replace("1 seed", "2 seeds") + "oracle.ensemble = 1)"
    assert (tmp_path / "one-member" / "summary.md").read_text().endswith(f"## KLoM\n\n{one_member.klom_note}\n")
