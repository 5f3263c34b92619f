"""The bench scripts' ``rebuild``: each derives its published table and JSON summary from raw records alone, so a
record written here by hand must come back as the numbers it implies. The tiny end-to-end PBT study runs under
``slow``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clutune.clu.methods import has_hparam

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import ablation  # noqa: E402
import pbt_study  # noqa: E402
import tune_defaults  # noqa: E402


def _ablation_rows(kl: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for variant, values in kl.items():
        for seed, value in zip((100, 101, 102), values, strict=True):
            if np.isinf(value):
                rows.append({"preset": "digits-random", "variant": variant, "seed": seed, "diverged": True})
                continue
            for request, kind in enumerate(("learn", "unlearn")):
                rows.append(
                    {"preset": "digits-random", "variant": variant, "seed": seed, "request": request, "kind": kind}
                    | {"kl_oracle_all": value, "avg_gap": 0.1, "gap_unlearn": 0.01 * seed, "diverged": False}
                )
    return pd.DataFrame(rows)


def test_ablation_rebuilds_its_table_and_summary_from_its_rows(tmp_path):
    folder = tmp_path / "results" / "ablation-digits"
    folder.mkdir(parents=True)
    kl = {"UG-CLU (tuned defaults)": [0.1, 0.2, 0.3], "no slow steps (K_in=0)": [5.0, np.inf, 7.0]}
    _ablation_rows(kl).to_parquet(folder / "results.parquet", compression="zstd")
    (folder / "run.json").write_text(json.dumps({"command": "python bench/ablation.py", "seeds": [100, 101, 102]}))
    ablation.rebuild(tmp_path / "results", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "ablation-digits.json").read_text())["presets"]["digits-random"]
    assert summary["UG-CLU (tuned defaults)"]["kl_oracle_all"]["mean"] == pytest.approx(0.2)
    assert summary["UG-CLU (tuned defaults)"]["max_gap_unlearn"]["mean"] == pytest.approx(1.01)
    # a diverged seed stays visible
    assert summary["no slow steps (K_in=0)"]["kl_oracle_all"] == {"mean": np.inf, "std": None, "n": 3}
    assert summary["no slow steps (K_in=0)"]["avg_gap"]["n"] == 2
    table = (tmp_path / "out" / "ablation-digits.md").read_text()
    assert "| UG-CLU (tuned defaults) | digits-random | 0.200 ± 0.100 |" in table
    assert "| no slow steps (K_in=0) | digits-random | diverged on 1 of 3 seeds |" in table
    assert table.rstrip().endswith("Command: `python bench/ablation.py`")


def test_tuning_rebuild_records_the_optimism_and_how_each_search_ended(tmp_path):
    folder = tmp_path / "results" / "tuning-digits"
    (folder / "er").mkdir(parents=True)
    run = {"command": "python bench/tune_defaults.py --dataset digits", "cap": 60, "min_trials": 20}
    run |= {"tolerance": 0.01, "sampler": "gp", "seeds": [0, 1], "budget": 200, "pick": "first"}
    (folder / "run.json").write_text(json.dumps(run | {"confirm_seeds": [100, 101, 102], "space": None}))
    record = {"trials": 51, "converged": False, "params": {"lr": 0.1}, "worse_than_tuned": True}
    record |= {"tuned_kl_oracle_all": 0.25, "confirmed_kl_oracle_all": 0.3, "confirmed_mean_kl_oracle_all": 0.28}
    record |= {"confirmed_std_kl_oracle_all": 0.02, "tuned_avg_gap": 0.02, "confirmed_avg_gap": 0.01}
    record |= {"confirmed_mean_avg_gap": 0.01, "confirmed_std_avg_gap": 0.001}
    (folder / "er" / "record.json").write_text(json.dumps(record))
    tune_defaults.rebuild(tmp_path / "results", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "tuning-digits.json").read_text())
    er = summary["methods"]["er"]
    assert er["optimism"]["kl_oracle_all"] == pytest.approx(0.05)
    assert er["optimism"]["avg_gap"] == pytest.approx(-0.01)
    assert not er["histories"] and summary["converged"] == 0 and summary["count"] == 1
    assert (
        "Command: `python bench/tune_defaults.py --dataset digits`"
        in (tmp_path / "out" / "tuning-digits.md").read_text()
    )
    assert tune_defaults.spent(51, 60, False).startswith("51 trials, stopped by the convergence rule short of the cap")
    assert tune_defaults.spent(60, 60, False) == "60 trials, the cap, not converged"
    assert tune_defaults.spent(40, 60, True) == "converged at 40 trials, cap 60"


def test_apply_writes_each_recorded_pick_to_the_defaults_with_how_its_search_ended(tmp_path):
    folder = tmp_path / "results" / "tuning-digits"
    for method in ("er", "finetune"):
        (folder / method).mkdir(parents=True)
    run = {"command": "python bench/tune_defaults.py --dataset digits", "cap": 120, "budget": 200}
    (folder / "run.json").write_text(json.dumps(run))
    record = {"trials": 120, "cap": 120, "converged": False, "sampler": "gp", "seeds": [0, 1], "pick": "first"}
    record |= {"stability_seeds": [100, 101, 102], "diverged_runs": 1, "stability_runs": 6}
    (folder / "er" / "record.json").write_text(json.dumps(record | {"params": {"lr": 0.03, "unlearn_lr": 2e-4}}))
    converged = record | {"trials": 44, "converged": True, "diverged_runs": 0}
    (folder / "finetune" / "record.json").write_text(json.dumps(converged | {"params": {"lr": 0.002}}))
    best = tmp_path / "best"
    best.mkdir()
    (best / "er-digits.yaml").write_text("# before\nlr: 0.5\nepochs_per_learn: 20\n")
    assert tune_defaults.apply(tmp_path / "results", "digits", best) == ["finetune", "er"]
    er = (best / "er-digits.yaml").read_text()
    assert yaml.safe_load(er) == {"lr": 0.03, "epochs_per_learn": 20, "buffer_size": 200, "unlearn_lr": 2e-4}
    assert "120 trials, the cap, not converged" in er.splitlines()[0] and "1 of 6 runs diverged" in er
    finetune = (best / "finetune-digits.yaml").read_text()
    assert yaml.safe_load(finetune) == {"lr": 0.002}  # finetune keeps no buffer: no budget written
    assert "converged at 44 trials, cap 120" in finetune.splitlines()[0]
    with pytest.raises(SystemExit, match="no tuning records"):
        tune_defaults.apply(tmp_path / "results", "mnist1d", best)


@pytest.mark.parametrize("dataset", sorted(tune_defaults.BUDGETS))
def test_every_shipped_default_holds_the_pick_of_its_committed_tuning_record(dataset):
    """The defaults are derived from the committed records (`--apply`): a hand edit or a forgotten apply fails."""
    folder = BENCH / "results" / f"tuning-{dataset}"
    run = json.loads((folder / "run.json").read_text())
    records = tune_defaults.records_of(folder)
    assert records, folder
    for method, record in records.items():
        shipped = yaml.safe_load((tune_defaults.BEST_DIR / f"{method}-{dataset}.yaml").read_text())
        assert {k: shipped.get(k) for k in record["params"]} == record["params"], method
        if has_hparam(method, "buffer_size"):
            assert shipped["buffer_size"] == run["budget"], method


def _arm_rows(arm: str) -> pd.DataFrame:
    """Two trials over four requests; in the PBT arm trial b copies trial a at request 2 and doubles K_in."""
    rows = []
    for trial, kl, k_in in (("a", 0.2, 3), ("b", 0.6, 6)):
        for request in range(4):
            row = {"trial_id": trial, "request": request, "kl_oracle_all": kl, "samples_processed": 10 * k_in}
            row |= {"hp_K_in": float(k_in), "hp_lr": 0.1, "exploited_from": ""}
            rows.append(row)
    frame = pd.DataFrame(rows)
    if arm == "pbt":
        copied = (frame["trial_id"] == "b") & (frame["request"] >= 2)
        frame.loc[copied, ["kl_oracle_all", "hp_K_in", "samples_processed"]] = [0.1, 6.0, 60]
        frame.loc[copied & (frame["request"] == 2), "exploited_from"] = "a"
    return frame


def _pbt_records(folder: Path) -> None:
    run = {"command": "python bench/pbt_study.py --seeds 0", "preset": "digits-long-200", "trials": 2}
    run |= {"interval": 2, "seeds": "0", "sampler": "tpe", "sampler_seed": 0, "confirm_seeds": "100,101,102"}
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(run | {"sets": []}))
    for arm in pbt_study.ARMS:
        rows = _arm_rows(arm)
        (folder / arm).mkdir()
        rows.to_parquet(folder / arm / "results.parquet", compression="zstd")
        objective = rows.groupby("trial_id")["kl_oracle_all"].mean()
        if arm == "pbt":  # b's objective is its lineage's: a's first two requests, then its own
            objective["b"] = 0.15
        trials = pd.DataFrame({"trial_id": ["a", "b"], "number": [0, 1], pbt_study.COLUMN: objective[["a", "b"]]})
        trials.to_csv(folder / arm / "trials.csv.gz", index=False)
        (folder / arm / "seconds.json").write_text(json.dumps({"seconds": 60.0}))
    confirm = [
        {"arm": arm, "seed": seed, "request": r, "kl_oracle_all": value, "samples_processed": 100}
        for arm, values in (("pbt", (0.30, 0.20, 0.40)), ("fixed", (0.25, 0.30, 0.35)))
        for seed, value in zip((100, 101, 102), values, strict=True)
        for r in range(2)
    ]
    (folder / "confirm").mkdir()
    pd.DataFrame(confirm).to_parquet(folder / "confirm" / "results.parquet", compression="zstd")


def test_pbt_rebuild_follows_the_lineage_counts_sample_passes_and_pairs_the_confirmation(tmp_path):
    _pbt_records(tmp_path / "results" / "pbt-study" / "seed0")
    pbt_study.rebuild(tmp_path / "results", tmp_path / "out")
    target = tmp_path / "out" / "pbt-study" / "seed0"
    summary = json.loads((target / "pbt-study.json").read_text())
    pbt, fixed = summary["arms"]["pbt"], summary["arms"]["fixed"]
    assert pbt["best_trial"] == "b" and fixed["best_trial"] == "a"
    # b's stream: a's rows 0-1 at K_in 3, then its own from the copy on at K_in 6
    assert [s["K_in"] for s in pbt["schedule"]] == [3.0, 6.0] and pbt["schedule"][1]["from_request"] == 2
    assert (pbt["K_in_first"], pbt["K_in_last"], pbt["K_in_mean"]) == (3.0, 6.0, 4.5)
    assert pbt["copies"] == [{"request": 2, "trial": "b", "from": "a", "K_in": 6.0, "lr": 0.1}]
    assert pbt["sample_passes"] == 4 * 30 + 4 * 60 and pbt["trial_requests"] == 8
    assert summary["passes_ratio"] == pytest.approx(1.0)
    confirm = summary["confirm"]
    diffs = np.array([0.05, -0.10, 0.05])
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)
    assert confirm["diff"]["mean"] == pytest.approx(0.0)
    assert confirm["diff"]["low"] == pytest.approx(-half) and confirm["diff"]["high"] == pytest.approx(half)
    assert confirm["pbt_better"] == 1 and confirm["verdict"] == "indistinguishable"
    report = (target / "pbt-study.md").read_text()
    assert "| 101 | 0.2 | 0.3 | -0.1 |" in report and "Command: `python bench/pbt_study.py --seeds 0`" in report
    assert (target / "pbt-study.png").stat().st_size > 0


TINY_PBT = [
    "oracle.epochs=2",
    "scenario.requests=[{learn: {task: 0}}, {learn: {task: 1}}, {unlearn: {classes: [1]}}, {learn: {task: 2}}]",
    "epochs_per_learn=1",
    "methods.ugclu.iters_per_unlearn=2",
    "probe_size=0",
    "sweep.pbt.quantile=0.5",
]


@pytest.mark.slow  # two tiny sweeps on Ray and four replayed streams
def test_pbt_study_replays_each_winner_exactly_on_its_own_seed(tmp_path):
    sets = [*TINY_PBT, f"oracle.cache_dir={tmp_path / 'oracles'}"]
    args = ["--preset", "digits-agnostic-class", "--trials", "2", "--interval", "2", "--confirm-seeds", "100,101"]
    args += ["--sampler", "tpe", "--results", str(tmp_path / "results"), *(a for s in sets for a in ("--set", s))]
    done = subprocess.run(
        [sys.executable, str(BENCH / "pbt_study.py"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp_path / "results" / "pbt-study" / "seed0"
    summary = json.loads((folder / "pbt-study.json").read_text())
    assert summary["confirm"]["seeds"] == [100, 101]
    for arm in pbt_study.ARMS:
        rows = pd.read_parquet(folder / arm / "results.parquet")
        plan = pbt_study.schedule(pbt_study.lineage(rows, pbt_study.winner(folder, arm)), pbt_study.hparam_keys(rows))
        replayed = pd.DataFrame(pbt_study.replay("digits-agnostic-class", sets, 0, plan))
        # The replay on the pick seed is the winner's own stream: the same objective, the same work per request.
        assert replayed["kl_oracle_all"].mean() == pytest.approx(summary["arms"][arm]["best"], rel=1e-9)
        lineage = pbt_study.lineage(rows, pbt_study.winner(folder, arm)).sort_values("request")
        assert replayed["samples_processed"].tolist() == lineage["samples_processed"].tolist()
