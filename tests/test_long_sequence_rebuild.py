"""The long-stream benchmarks' rebuilds: bench/long_sequence.py's derived files come from its raw records alone
and its cost verdict reads CPU seconds over seeds, flat only where the interval over seeds is; bench/
subnormal_flush.py's summary reads the subnormal weights and the CPU ratios of its two settings from its rows."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
REQUESTS, SEEDS = 20, (0, 1, 2)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _rows() -> pd.DataFrame:
    """Two methods over seeds, as a study writes them: ``slow``'s training CPU seconds double from the first
    fifth to the last, ``steady``'s stay put; each seed's noise differs a little, the evaluation's is the same."""
    rng = np.random.default_rng(0)
    rows = []
    for method, growth in (("slow", 2.0), ("steady", 1.0)):
        for seed in SEEDS:
            for k in range(REQUESTS):
                scale = 1.0 + (growth - 1.0) * k / (REQUESTS - 1)
                train = 0.1 * scale * (1 + 0.01 * seed)
                kl = 0.5 + 0.01 * k + 0.01 * rng.random()
                rows.append(
                    {
                        **{"run_id": f"{method}{seed}", "method": method, "seed": seed, "request": k},
                        **{"kind": "learn" if k % 3 else "unlearn", "samples_processed": 1000},
                        **{"seconds": 3 * train, "cpu_seconds": train, "intra_op_threads": 1, "rss_mb": 900.0},
                        **{"step_seconds": 3 * train + 0.06, "cpu_step_seconds": train + 0.02},
                        **{"oracle_evaluated": k % 5 == 4, "kl_oracle_all": kl if k % 5 == 4 else np.nan},
                        **{"acc_remain": 0.9, "acc_learn": 0.95, "oracle_acc_learn": 0.94, "forgetting": 0.05},
                        **{"dead_units": 0.1 + 0.01 * k, "weight_magnitude": 0.05, "effective_rank": 20.0 - 0.1 * k},
                    }
                )
    return pd.DataFrame(rows)


def test_rebuild_writes_the_derived_files_from_the_raw_records_alone(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    meta = {
        **{"command": "python bench/long_sequence.py --dataset digits", "preset": "digits-long-200"},
        **{"methods": "slow,steady", "seeds": "0,1,2", "oracle_policy": "every_k every 5"},
        **{"oracle_wall_s": 12.0, "study_wall_s": 600.0, "machine": "x86_64, 2 CPUs", "load": "load average 1.0"},
    }
    long_sequence = _script("long_sequence")
    long_sequence.save_records(results / "long-digits", _rows(), meta)
    long_sequence.rebuild(results, out)

    names = {p.name for p in out.iterdir()}
    assert names == {f"long-digits{s}" for s in (".md", ".json", "-curves.png", "-methods_kl_oracle.png")}
    summary = json.loads((out / "long-digits.json").read_text())
    assert summary["command"] == meta["command"] and summary["seeds"] == [0, 1, 2]
    cpu = summary["cpu_late_over_early"]
    for kind in ("learn", "unlearn"):
        slow, steady = cpu["slow"][kind]["train"], cpu["steady"][kind]["train"]
        assert slow["n"] == steady["n"] == 3
        assert 1.6 < slow["lo"] <= slow["mean"] <= slow["hi"] < 2.1 and not slow["flat"]
        assert steady["mean"] == 1.0 and steady["flat"]
        assert cpu["steady"][kind]["eval"]["flat"]  # the evaluation's CPU seconds do not grow for either
    text = (out / "long-digits.md").read_text()
    assert f"Command: `{meta['command']}`" in text and "(flat)" in text


def test_subnormal_flush_summary_reads_both_settings_from_the_rows(tmp_path):
    """Without flushing, weights turn subnormal and training slows late in the stream; with it, neither."""
    rows = []
    for flush in (True, False):
        for k in range(REQUESTS):
            late = k >= REQUESTS // 2
            train = 0.1 * (3.0 if late and not flush else 1.0)
            rows.append(
                {
                    **{"request": k, "kind": "learn" if k % 3 else "unlearn", "seed": 0, "method": "ugclu"},
                    **{"intra_op_threads": 1, "samples_processed": 1000, "dead_units": 0.1, "kl_oracle_all": 0.5},
                    **{"seconds": train, "cpu_seconds": train, "step_seconds": train + 0.02},
                    **{"cpu_step_seconds": train + 0.02, "flush_denormal": flush, "weights": 9610},
                    "subnormal": 0 if flush else 10 * k,
                }
            )
    folder = tmp_path / "results" / "subnormal-flush"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "results.parquet", compression="zstd")
    meta = {"seed": 0, "command": "python bench/subnormal_flush.py", "machine": "x86_64", "load": "load 1.0"}
    (folder / "run.json").write_text(json.dumps(meta))
    _script("subnormal_flush").rebuild(tmp_path / "results", tmp_path / "out")

    summary = json.loads((tmp_path / "out" / "subnormal-flush.json").read_text())
    assert summary["subnormal_at_end"] == {"on": 0, "off": 10 * (REQUESTS - 1)}
    ratios = summary["late_over_early"]
    for kind in ("learn", "unlearn"):
        assert ratios["on"][kind]["cpu_seconds"]["ratio"] == pytest.approx(1.0)
        assert ratios["off"][kind]["cpu_seconds"]["ratio"] == pytest.approx(3.0)
        assert ratios["off"][kind]["cpu_eval_seconds"]["ratio"] == pytest.approx(1.0)
    assert "Command: `python bench/subnormal_flush.py`" in (tmp_path / "out" / "subnormal-flush.md").read_text()


def test_a_diverged_run_is_named_and_left_out_of_every_number(tmp_path):
    """A run that stopped early (outputs not finite) would compare other requests' fifths than the rest: its rows
    stay in the records, the derived files name it and leave it out."""
    results, out = tmp_path / "results", tmp_path / "out"
    rows = _rows()
    rows = rows[~((rows["method"] == "slow") & (rows["seed"] == 2) & (rows["request"] >= 40))]
    diverged = [{"method": "slow", "seed": 2, "request": 40, "reason": "the model's outputs are not finite"}]
    meta = {
        **{"command": "python bench/long_sequence.py --dataset mnist1d", "preset": "mnist1d-long-1000"},
        **{"methods": "slow,steady", "seeds": "0,1,2", "oracle_policy": "every_k every 5", "diverged": diverged},
        **{"oracle_wall_s": 12.0, "study_wall_s": 600.0, "machine": "x86_64, 2 CPUs", "load": "load average 1.0"},
    }
    long_sequence = _script("long_sequence")
    long_sequence.save_records(results / "long-mnist1d", rows, meta)
    long_sequence.rebuild(results, out)

    assert len(pd.read_parquet(results / "long-mnist1d" / "results.parquet")) == len(rows)  # the records keep it
    summary = json.loads((out / "long-mnist1d.json").read_text())
    assert summary["diverged"] == diverged
    assert summary["cpu_late_over_early"]["slow"]["learn"]["train"]["n"] == 2
    assert summary["cpu_late_over_early"]["steady"]["learn"]["train"]["n"] == 3
    assert "slow, seed 2: diverged at request 40" in (out / "long-mnist1d.md").read_text()
