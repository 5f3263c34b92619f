"""UG-CLU against finetune on the digits task-agnostic presets, with the shipped defaults and real oracles."""

from __future__ import annotations

import numpy as np
import pytest

from clutune.core.config import load_config
from clutune.core.experiment import method_hparams, prepare, run_experiment


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("oracles")


@pytest.mark.slow  # a quality check on two full presets: `make test` runs it (docs/testing.md)
@pytest.mark.parametrize("preset", ["digits-agnostic-class", "digits-random"])
def test_ugclu_is_closer_to_the_oracle_than_finetune(preset, cache):
    config = load_config(preset, [f"oracle.cache_dir={cache}", "device=cpu"])
    prep = prepare(config)
    rows = {m: run_experiment(prep, m, method_hparams(config, m, "digits"), seed=0) for m in ("ugclu", "finetune")}
    kl = {m: float(np.mean([r["kl_oracle_all"] for r in rs])) for m, rs in rows.items()}
    assert kl["ugclu"] < kl["finetune"], kl
    for row in rows["ugclu"]:
        if row["kind"] == "unlearn":
            gap = abs(row["acc_unlearn"] - row["oracle_acc_unlearn"])
            assert gap <= 0.05, f"request {row['request']}: acc_unlearn {row['acc_unlearn']:.3f} vs oracle"
