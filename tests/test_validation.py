"""Every bad input is refused by the real CLI before any work: exit 2, one line naming the culprit, nothing written."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from clutune.cli import main
from clutune.data import load_dataset

# The structure of the preset digits-agnostic-class, with a tiny oracle so nothing slow could ever start.
BASE: dict[str, Any] = {
    "name": "validation",
    "seed": 0,
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [16]},
    "oracle": {"epochs": 1, "lr": 0.05, "batch_size": 64},
    "scenario": {
        "classes_per_task": 2,
        "requests": [
            {"learn": {"task": 0}},
            {"learn": {"task": 1}},
            {"unlearn": {"classes": [1]}},
        ],
    },
}


@pytest.fixture(scope="module")
def labels() -> list[int]:
    return load_dataset("digits").y_train.tolist()


def first_id_of_class(labels: list[int], c: int) -> int:
    return labels.index(c)


def write_config(tmp_path: Path, requests: list[dict[str, Any]] | None = None, **top: Any) -> Path:
    cfg = copy.deepcopy(BASE)
    if requests is not None:
        cfg["scenario"]["requests"] = requests
    cfg.update(top)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def reject(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: Path | str, *extra: str, method: str = "finetune"
) -> str:
    """Run the CLI, check exit 2, a single ``clutune: error:`` line, no output folder, no oracle cache."""
    out = tmp_path / "out"
    cache = tmp_path / "oracles"
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["run", "--config", str(config), "--method", method, "--out", str(out)]
    argv += ["--set", f"oracle.cache_dir={cache}", *extra]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("clutune: error: ")
    assert captured.out == ""  # not even the run banner: it fails before starting
    assert not out.exists()
    assert not cache.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return lines[0]


# ------------------------------------------------------------------ scenario rules


def test_unlearn_ids_never_learned(capsys, tmp_path, labels):
    never = first_id_of_class(labels, 6)  # task 3, never learned in this stream
    cfg = write_config(
        tmp_path,
        [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"ids": [never]}}],
    )
    msg = reject(capsys, tmp_path, cfg)
    assert "request 2" in msg
    assert "never learned" in msg
    assert f"id {never}" in msg


def test_unlearn_whole_task_never_learned(capsys, tmp_path):
    cfg = write_config(tmp_path, [{"learn": {"task": 0}}, {"unlearn": {"task": 4}}])
    msg = reject(capsys, tmp_path, cfg)
    assert "request 1" in msg
    assert "never learned" in msg


def test_unlearn_ids_already_unlearned(capsys, tmp_path, labels):
    gone = first_id_of_class(labels, 1)
    cfg = write_config(
        tmp_path,
        [
            {"learn": {"task": 0}},
            {"unlearn": {"classes": [1]}},
            {"learn": {"task": 1}},
            {"unlearn": {"ids": [gone]}},
        ],
    )
    msg = reject(capsys, tmp_path, cfg)
    assert "request 3" in msg
    assert "already unlearned" in msg
    assert "request 1" in msg  # when it was unlearned
    assert f"id {gone}" in msg


def test_unlearn_class_already_unlearned(capsys, tmp_path):
    cfg = write_config(
        tmp_path,
        [{"learn": {"task": 0}}, {"unlearn": {"classes": [1]}}, {"unlearn": {"classes": [1]}}],
    )
    msg = reject(capsys, tmp_path, cfg)
    assert "request 2" in msg
    assert "[1]" in msg


def test_unknown_class(capsys, tmp_path):
    cfg = write_config(tmp_path, [{"learn": {"task": 0}}, {"unlearn": {"classes": [12]}}])
    msg = reject(capsys, tmp_path, cfg)
    assert "request 1" in msg
    assert "unknown class 12" in msg


def test_empty_request(capsys, tmp_path):
    cfg = write_config(tmp_path, [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {}}])
    msg = reject(capsys, tmp_path, cfg)
    assert "request 2" in msg
    assert "empty request" in msg


@pytest.mark.parametrize("fraction", [0, 1.5])
def test_fraction_outside_open_unit_interval(capsys, tmp_path, fraction):
    cfg = write_config(tmp_path, [{"learn": {"task": 0}}, {"unlearn": {"fraction": fraction}}])
    msg = reject(capsys, tmp_path, cfg)
    assert "request 1" in msg
    assert "fraction" in msg
    assert repr(fraction) in msg


# ------------------------------------------------------------------ config keys and types


def test_unknown_top_level_key_in_file(capsys, tmp_path):
    cfg = write_config(tmp_path, oracel={})
    msg = reject(capsys, tmp_path, cfg)
    assert "'oracel'" in msg
    assert "unknown config key" in msg


def test_unknown_nested_key_in_file(capsys, tmp_path):
    cfg = write_config(tmp_path, oracle={"epoch": 3})
    msg = reject(capsys, tmp_path, cfg)
    assert "'oracle.epoch'" in msg
    assert "unknown config key" in msg


def test_unknown_key_via_set(capsys, tmp_path):
    cfg = write_config(tmp_path)
    msg = reject(capsys, tmp_path, cfg, "--set", "oracle.epoch=3")
    assert "'oracle.epoch'" in msg
    assert "unknown config key" in msg


def test_unknown_section_via_set(capsys, tmp_path):
    cfg = write_config(tmp_path)
    msg = reject(capsys, tmp_path, cfg, "--set", "oracel.epochs=3")
    assert "'oracel'" in msg


def test_wrong_type_in_file(capsys, tmp_path):
    cfg = write_config(tmp_path, oracle={"epochs": "abc"})
    msg = reject(capsys, tmp_path, cfg)
    assert "'oracle.epochs'" in msg
    assert "int" in msg
    assert "abc" in msg


def test_wrong_type_via_set(capsys, tmp_path):
    cfg = write_config(tmp_path)
    msg = reject(capsys, tmp_path, cfg, "--set", "oracle.epochs=abc")
    assert "'oracle.epochs'" in msg
    assert "int" in msg
    assert "abc" in msg


def test_wrong_type_method_hyperparameter_in_file(capsys, tmp_path):
    cfg = write_config(tmp_path, methods={"finetune": {"lr": "fast"}})
    msg = reject(capsys, tmp_path, cfg)
    assert "'methods.finetune.lr'" in msg


def test_unknown_method(capsys, tmp_path):
    cfg = write_config(tmp_path)
    msg = reject(capsys, tmp_path, cfg, method="nosuchmethod")
    assert "unknown method 'nosuchmethod'" in msg
    assert "finetune" in msg  # lists the known ones


def test_unknown_hyperparameter_via_set(capsys, tmp_path):
    cfg = write_config(tmp_path)
    msg = reject(capsys, tmp_path, cfg, "--set", "methods.finetune.gamma=1")
    assert "'methods.finetune.gamma'" in msg
    assert "unknown config key" in msg


def test_unknown_bare_hyperparameter_via_set(capsys, tmp_path):
    cfg = write_config(tmp_path)
    msg = reject(capsys, tmp_path, cfg, "--set", "gamma=1")
    assert "'methods.finetune.gamma'" in msg


def test_unknown_hyperparameter_in_file(capsys, tmp_path):
    cfg = write_config(tmp_path, methods={"finetune": {"gamma": 1}})
    msg = reject(capsys, tmp_path, cfg)
    assert "'methods.finetune.gamma'" in msg


# ------------------------------------------------------------------ files and data


def test_malformed_yaml(capsys, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nscenario: {requests: [\n  - learn: {task: 0}\n")
    msg = reject(capsys, tmp_path, path)
    assert str(path) in msg
    assert "malformed YAML" in msg


def test_missing_config_file(capsys, tmp_path):
    missing = tmp_path / "does-not-exist.yaml"
    msg = reject(capsys, tmp_path, missing)
    assert str(missing) in msg
    assert "not found" in msg


def test_missing_cifar10_folder(capsys, tmp_path):
    root = tmp_path / "no-cifar-here"
    cfg = write_config(tmp_path, dataset={"name": "cifar10", "root": str(root)})
    msg = reject(capsys, tmp_path, cfg)
    assert "CIFAR-10" in msg
    assert str(root) in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg  # where to get it
    assert "dataset.root" in msg
    assert not root.exists()


# ------------------------------------------------------------------ the real process


def test_console_script_exits_2(tmp_path):
    exe = Path(sys.executable).parent / "clutune"
    assert exe.exists()
    cfg = write_config(tmp_path, [{"learn": {"task": 0}}, {"unlearn": {"classes": [12]}}])
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(exe), "run", "--config", str(cfg), "--method", "finetune", "--out", str(out)]
        + ["--set", f"oracle.cache_dir={tmp_path / 'oracles'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("clutune: error: ")
    assert "request 1" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert not (tmp_path / "oracles").exists()


def test_existing_results_are_not_overwritten(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.parquet").write_bytes(b"earlier results")
    argv = ["run", "--config", str(write_config(tmp_path)), "--method", "finetune", "--out", str(out)]
    rc = main([*argv, "--set", f"oracle.cache_dir={tmp_path / 'oracles'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("clutune: error: --out") and "--overwrite" in err
    assert (out / "results.parquet").read_bytes() == b"earlier results"
    assert not (tmp_path / "oracles").exists()


def test_unlearning_a_partly_learned_task_takes_what_is_owned(labels):
    from clutune.core.scenarios import build_scenario

    y = torch.tensor(labels)
    task0 = (y < 2).nonzero().flatten().tolist()
    sc = build_scenario([{"learn": {"ids": task0[:5]}}, {"unlearn": {"task": 0}}], y, 10)
    assert sc.requests[1].ids.tolist() == sorted(task0[:5])
    assert not sc.requests[1].whole_tasks
    full = build_scenario([{"learn": {"task": 0}}, {"unlearn": {"task": 0}}], y, 10)
    assert full.requests[1].whole_tasks


@pytest.mark.parametrize(("key", "value"), [("checkpoint_every", "0"), ("checkpoint_seconds", "-1")])
def test_checkpoint_cadence_out_of_range(capsys, tmp_path, key, value):
    line = reject(capsys, tmp_path, write_config(tmp_path), "--set", f"sweep.{key}={value}")
    assert f"sweep.{key}" in line
