"""bench/long_sequence.py's rebuild: the derived files of a long stream come from its raw records alone, and its
cost verdict reads CPU seconds over seeds, flat only where the interval over seeds is."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parents[1] / "bench"
REQUESTS, SEEDS = 20, (0, 1, 2)


def _long_sequence():
    spec = importlib.util.spec_from_file_location("long_sequence", BENCH / "long_sequence.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["long_sequence"] = module
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
    long_sequence = _long_sequence()
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
