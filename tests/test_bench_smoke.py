"""Every benchmark script still runs: each loads and parses its arguments, the cheap ones run on a tiny setting,
and the sweeps run a tiny one under the ``slow`` marker. A function a script uses that was renamed or moved
fails here, not when someone next measures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clutune.platform.run.compare import TABLE_METRICS

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "table.py")  # table.py: a helper, no command


def _run(script: str, *args: str, cwd: Path, timeout: int = 300) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{script} {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_every_script_loads_and_parses_its_arguments(tmp_path):
    """One interpreter runs each script's ``--help``: every import at its top and its argument parser, then
    the profile's timed steps, which it reaches by name."""
    code = f"""
import runpy, sys
sys.path.insert(0, {str(BENCH)!r})
for name in {SCRIPTS!r}:
    sys.argv = [name, "--help"]
    try:
        runpy.run_path({str(BENCH)!r} + "/" + name, run_name="__main__")
    except SystemExit as e:
        assert e.code == 0, (name, e.code)
    else:
        raise AssertionError(name + " --help did not exit")
    print("ok", name, flush=True)
import sweep_overhead
sweep_overhead.check_spans()
print("spans ok")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("ok ")] == SCRIPTS
    assert done.stdout.rstrip().endswith("spans ok")


@pytest.mark.slow  # a CNN trained on fake CIFAR-10 images: `make test` runs it (docs/testing.md)
def test_gpu_bench_runs_on_fake_cifar10_on_the_cpu(tmp_path):
    _run("fake_cifar10.py", str(tmp_path / "cifar"), "--train", "64", "--test", "16", cwd=tmp_path)
    tiny = ["--root", str(tmp_path / "cifar"), "--out", str(tmp_path), "--device", "cpu", "--model", "cnn"]
    tiny += ["--batch", "8", "--steps", "2", "--warmup", "1", "--compile", "0", "--oracle-epochs", "1"]
    for mode in ("throughput", "oracle"):
        _run("gpu_bench.py", "--mode", mode, *tiny, cwd=tmp_path)
        record = json.loads((tmp_path / f"gpu-{mode}.json").read_text())
        assert record["mode"] == mode and record["result"]


@pytest.mark.slow  # a bench script's grid on Ray: `make test` runs it (docs/testing.md)
def test_compare_tables_rebuilds_its_tables_from_earlier_batches(tmp_path):
    rng = np.random.default_rng(0)
    for preset in ("digits-agnostic-class", "digits-random"):
        for budget in (200, 500):
            folder = tmp_path / "runs" / f"{preset}-b{budget}-all"
            folder.mkdir(parents=True)
            rows = [
                {"run_id": f"{m}-{s}", "method": m, "seed": s, "request": r, "kind": "learn", "oracle_key": f"o{r}"}
                | {metric: rng.random() for metric in TABLE_METRICS}
                for m in ("ugclu", "er")
                for s in (100, 101, 102)
                for r in range(3)
            ]
            pd.DataFrame(rows).to_parquet(folder / "results.parquet")
    out = _run(
        "compare_tables.py", "--dataset", "digits", "--out", "runs", "--tables-only", "--ensemble", "1", cwd=tmp_path
    )
    tables = sorted((tmp_path / "bench" / "results").glob("compare-*.md"))
    assert [p.name for p in tables] == [
        "compare-digits-agnostic-class-b200.md",
        "compare-digits-agnostic-class-b500.md",
        "compare-digits-random-b200.md",
        "compare-digits-random-b500.md",
    ]
    assert "| ugclu |" in out and "--set buffer_size=500" in tables[1].read_text()


FAST_SWEEP = [
    "oracle.epochs=2",
    "scenario.requests=[{learn: {task: 0}}, {learn: {task: 1}}, {unlearn: {classes: [1]}}]",
    "sweep.seeds=[0]",
    "epochs_per_learn=1",
    "iters_per_unlearn=2",
]


@pytest.mark.slow
def test_sweep_overhead_runs_a_tiny_pair_and_its_profile(tmp_path):
    sets = [a for s in FAST_SWEEP for a in ("--set", s)]
    out = tmp_path / "overhead.md"
    args = ["--config", "digits-agnostic-class", "--trials", "1", "--concurrency", "1", "--repeats", "1", *sets]
    _run("sweep_overhead.py", *args, "--out", str(out), cwd=tmp_path, timeout=600)
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["rows"][0]["max_diff"] <= 1e-9 and payload["profile"]["steps"]


@pytest.mark.slow
def test_cost_ratios_count_model_agrees_with_its_tiny_run(tmp_path):
    _run("cost_ratios.py", "--out", str(tmp_path / "results"), cwd=tmp_path, timeout=600)
    payload = json.loads((tmp_path / "results" / "cost_ratios.json").read_text())
    assert payload["records"] and payload["tiny_run"]["mismatches"] == []


@pytest.mark.slow
def test_tune_defaults_tunes_one_method_on_a_tiny_sweep(tmp_path):
    sets = [a for s in [*FAST_SWEEP, "sweep.confirm_seeds=[100]"] for a in ("--set", s)]
    args = ["--dataset", "digits", "--methods", "finetune", "--trials", "2", "--min-trials", "2", "--seeds", "0"]
    args += ["--concurrency", "1", "--no-write-best", "--out", str(tmp_path / "out"), *sets]
    _run("tune_defaults.py", *args, cwd=tmp_path, timeout=600)
    record = json.loads((tmp_path / "out" / "tuning-digits.json").read_text())["methods"]["finetune"]
    assert record["trials"] == 2 and record["params"] and record["histories"]
    kept = tmp_path / "out" / "tuning-digits" / "finetune"
    assert len(pd.read_csv(kept / "trials.csv.gz")) == 2 and (kept / "record.json").exists()
