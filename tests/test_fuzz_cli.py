"""A fuzzer over the command line: config files and ``--set`` overrides drawn from a grammar of valid and invalid
values (wrong types, NaN, infinities, negatives, huge numbers, unknown keys, path tricks, bad YAML, bad UTF-8),
each run through the CLI's entry point in-process.

Whatever is drawn, the command ends with exit 0 or 2, never a traceback; on exit 2 it wrote nothing: no output
folder, nothing in the current folder (no ``mlflow.db``), nothing in the oracle cache. The base config is tiny
(two requests, an 8-unit MLP, one oracle epoch), so the drawn configs that are valid run in seconds. A failure
is reported by Hypothesis with the falsifying example and the ``@reproduce_failure`` line (its seed) to replay it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clutune.cli import main

BASE = """\
name: fuzz
dataset: {name: digits}
model: {name: mlp, hidden: [8]}
oracle: {epochs: 1, policy: final, batch_size: 128}
probe_size: 0
scenario:
  classes_per_task: 5
  requests:
    - learn: {task: 0}
    - unlearn: {classes: [0]}
methods:
  finetune: {epochs_per_learn: 1, iters_per_unlearn: 1, batch_size: 128}
"""

# Values no setting takes: each must be refused (or, where a key takes it, accepted) without a traceback.
HOSTILE = [
    ".nan",
    ".inf",
    "-.inf",
    "-1",
    "-0.5",
    "0",
    "1000000000000",
    "100000000000000000000000000000",
    "1e308",
    "-1e308",
    "[1,",
    "{a:",
    "'unterminated",
    ": :",
    "- - -",
    "../../x",
    "/etc/passwd",
    "a/b",
    "..",
    '"a\\x00b"',
    '"a\\x1bb"',
    "[]",
    "{}",
    "null",
    "true",
    '""',
    "[[1]]",
    "{x: 1}",
    "[-5]",
    "[0]",
    "file://runs",
    "ftp://host/x",
    "s3://",
    "http://u:p@h",
]

# Valid values that keep a run to seconds, per key the fuzzer sets.
CHEAP = {
    "seed": st.integers(0, 3).map(str),
    "device": st.sampled_from(["auto", "cpu", "bogus", "cuda:x", "cpu:0", "meta", "cuda:-1"]),
    "threads": st.integers(0, 2).map(str),
    "name": st.sampled_from(["fuzz", "a.b", "x-y_z", "it's", "dir/x", "../up", "\\x", "tab\there"]),
    "probe_size": st.integers(0, 50).map(str),
    "oracle.epochs": st.integers(1, 2).map(str),
    "oracle.lr": st.sampled_from(["0.05", "1e-3", "0.5"]),
    "oracle.momentum": st.sampled_from(["0", "0.5", "0.9", "1", "1.5"]),
    "oracle.weight_decay": st.sampled_from(["0", "5e-4"]),
    "oracle.batch_size": st.sampled_from(["64", "256"]),
    "oracle.schedule": st.sampled_from(["cosine", "constant", "linear"]),
    "oracle.policy": st.sampled_from(["final", "every", "unlearn", "never"]),
    "oracle.seed": st.integers(0, 3).map(str),
    "model.hidden": st.sampled_from(["[8]", "[4, 4]", "[]", "[8, 0]"]),
    "scenario.seed": st.integers(0, 3).map(str),
    "scenario.classes_per_task": st.sampled_from(["5", "2", "10", "11"]),
    "scenario.requests": st.sampled_from(
        [
            "[{learn: {task: 0}}]",
            "[{learn: {ids: [1, 2, 3]}}]",
            "[{learn: {ids: [1, 1]}}]",
            "[{unlearn: {task: 0}}]",
            "[{learn: {task: 7}}]",
            "[{learn: {ids: [100000000000000000000]}}]",
            "[{forget: {task: 0}}]",
            "[{learn: {task: 0, ids: [1]}}]",
            "[{learn: {}}]",
            "[]",
        ]
    ),
    "scenario.generate.n_requests": st.sampled_from(["1", "2", "1000000000000"]),
    "compute.precision": st.sampled_from(["fp32", "bf16", "fp8"]),
    "compute.eval_batch_size": st.sampled_from(["256", "1"]),
    "sweep.storage_path": st.sampled_from(["runs/sweeps", "file:///tmp/x", "file://runs", "gs://", "ftp://h/x"]),
    "sweep.seeds": st.sampled_from(["[0]", "[0, 0]", "[]", "[-1]"]),
    "methods.finetune.lr": st.sampled_from(["0.01", "0"]),
    "methods.finetune.unlearn_lr": st.sampled_from(["0", "1e-4"]),
    "dataset.name": st.sampled_from(["digits", "bogus"]),
    "oracle.bogus": st.just("1"),
    "bogus": st.just("1"),
    "scenario.bogus.deeper": st.just("1"),
}

_keys = st.sampled_from(sorted(CHEAP))


@st.composite
def overrides(draw) -> list[str]:
    """Zero to three ``key=value`` items: mostly a cheap value (some valid, some not), else a hostile one or
    arbitrary text."""
    items = []
    for _ in range(draw(st.integers(0, 3))):
        key = draw(_keys)
        source = draw(st.sampled_from(["cheap"] * 6 + ["hostile"] * 3 + ["text"]))
        if source == "cheap":
            value = draw(CHEAP[key])
        elif source == "hostile":
            value = draw(st.sampled_from(HOSTILE))
        else:
            value = draw(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12))
        items.append(f"{key}={value}")
    if any(i.startswith("scenario.generate.") for i in items):
        items.append("scenario.requests=[]")  # a generated stream replaces the explicit one
    return items


@st.composite
def config_files(draw) -> bytes:
    """The base file, the base with a section broken, arbitrary YAML-ish text, or bytes that are not UTF-8."""
    kind = draw(st.sampled_from(["base"] * 6 + ["appended"] * 2 + ["text", "bytes"]))
    if kind == "base":
        return BASE.encode()
    if kind == "appended":
        key = draw(st.sampled_from(["oracle", "model", "scenario", "compute", "nosuch", "name", "seed"]))
        value = draw(st.sampled_from([*HOSTILE, "{epochs: .nan}", "{hidden: [-5]}", "{lr: -1}"]))
        return (BASE + f"{key}: {value}\n").encode()
    if kind == "text":
        return draw(st.text(max_size=60)).encode()
    head, tail = draw(st.binary(max_size=20)), draw(st.binary(max_size=20))
    return head + b"\xff\xfe" + tail  # 0xff never occurs in UTF-8


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def workspace():
    root = Path(tempfile.mkdtemp(prefix="clutune-fuzz-"))
    before = os.getcwd()
    yield root
    os.chdir(before)
    shutil.rmtree(root, ignore_errors=True)


@settings(
    max_examples=int(os.environ.get("CLUTUNE_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(
    config=config_files(),
    sets=overrides(),
    method=st.sampled_from(["finetune"] * 5 + ["bogus"]),
    tracking=st.sampled_from([None] * 4 + ["sqlite"]),
)
def test_the_cli_ends_in_exit_0_or_2_and_exit_2_writes_nothing(workspace, config, sets, method, tracking):
    case = Path(tempfile.mkdtemp(dir=workspace))
    cwd, out, cache = case / "cwd", case / "out", workspace / "cache"
    cwd.mkdir()
    (case / "config.yaml").write_bytes(config)
    cache_before = _files(cache)
    argv = ["run", "--config", str(case / "config.yaml"), "--method", method, "--out", str(out)]
    store = case / "mlflow.db"
    argv += (
        ["--no-tracking"]
        if tracking is None
        else ["--tracking-uri", f"sqlite:///{store}" if tracking == "sqlite" else tracking]
    )
    argv += [a for s in [*sets, f"oracle.cache_dir={cache}"] for a in ("--set", s)]
    stderr = io.StringIO()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)  # an exception here is a traceback: Hypothesis reports the example and its seed
    finally:
        os.chdir(before)  # the case folder goes below; no later test may start in a deleted folder
    lines = stderr.getvalue().strip().splitlines()
    event(f"exit {code}")  # pytest --hypothesis-show-statistics: how many drawn commands ran, how many were refused
    assert code in (0, 2), (code, lines)
    if code == 2:
        errors = [line for line in lines if line.startswith("clutune: error: ")]
        assert len(errors) == 1, lines
        assert _files(cwd) == [], "written to the current folder before the error"
        assert not out.exists(), "output folder created before the error"
        assert _files(cache) == cache_before, "oracle cache written before the error"
        assert not store.exists(), "MLflow store created before the error"
    else:
        assert (out / "results.parquet").exists()
    shutil.rmtree(case, ignore_errors=True)


# Found by this fuzzer: refused in one line with exit 2, but once only after ``clutune run`` had created its output
# folder. The set-up path now checks the tracking URI and builds the model before the first write.
SET_UP_ORDER = [
    ["--tracking-uri", "ftp://h/x"],
    ["--tracking-uri", "http://"],
    ["--no-tracking", "--set", "model.name=bogus"],
]


@pytest.mark.parametrize("flags", SET_UP_ORDER, ids=["ftp-tracking", "hostless-tracking", "unknown-model"])
def test_the_set_up_path_checks_before_writing_anything(tmp_path, monkeypatch, capsys, flags):
    (tmp_path / "config.yaml").write_text(BASE)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    argv = ["run", "--config", str(tmp_path / "config.yaml"), "--method", "finetune", "--out", str(tmp_path / "out")]
    code = main([*argv, *flags, "--set", f"oracle.cache_dir={tmp_path / 'cache'}"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and line.startswith("clutune: error: ")
    assert _files(cwd) == [] and not (tmp_path / "cache").exists()
    assert not (tmp_path / "out").exists()
