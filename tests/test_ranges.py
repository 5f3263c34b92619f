"""Values out of range are one line before any side effect: seeds outside 0..2^32-1 wherever a seed enters
(``--seed``, ``--seeds`` through the function the CLI calls), and names longer than a file name may be in bytes."""

from __future__ import annotations

import pytest

from clutune.cli import main
from clutune.core.config import load_config
from clutune.errors import UserError
from clutune.guards.safe_names import name_problem
from clutune.platform.run.compare import GridOptions, run_compare
from clutune.platform.run.single_run import RunOptions, run_single
from clutune.platform.search.sweep import SweepOptions, run_sweep


@pytest.mark.parametrize("seed", [10**23, -1, 2**32])
def test_a_run_seed_out_of_range_is_one_line_and_creates_nothing(tmp_path, capsys, seed):
    out = tmp_path / "out"
    argv = ["run", "--config", "digits-random", "--method", "finetune", "--out", str(out), f"--seed={seed}"]
    assert main([*argv, "--no-tracking"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--seed {seed}" in err[0] and "0..4294967295" in err[0]
    assert not out.exists()
    with pytest.raises(UserError, match="--seed"):
        run_single("digits-random", RunOptions(method="finetune", out=str(out), seed=seed, tracking=False))


@pytest.mark.parametrize("seeds", [[-1], [0, 10**23], [True]])
def test_compare_seeds_out_of_range_are_refused_by_the_function_the_cli_calls(tmp_path, seeds):
    options = GridOptions(methods=["finetune"], seeds=seeds, out=tmp_path / "out")
    with pytest.raises(UserError, match="--seeds .*a seed"):
        run_compare("digits-random", options)
    assert not (tmp_path / "out").exists()


def test_a_sweep_seed_out_of_range_is_refused(tmp_path):
    with pytest.raises(UserError, match="--seed -1"):
        run_sweep("digits-random", SweepOptions(method="finetune", trials=1, seed=-1))


def test_the_largest_seed_is_accepted():
    assert load_config("digits-random", [f"seed={2**32 - 1}"]).seed == 2**32 - 1


def test_a_name_over_255_bytes_is_refused_even_under_200_characters():
    cjk = "名" * 200  # 200 characters, 600 bytes in UTF-8
    assert "600 bytes" in name_problem(cjk)
    with pytest.raises(UserError) as refused:
        load_config("digits-random", [f"name={cjk}"])
    assert "\n" not in str(refused.value) and "255" in str(refused.value)
    assert name_problem("名" * 85) is None  # 255 bytes exactly
