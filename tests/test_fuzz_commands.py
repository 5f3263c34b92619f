"""The fuzzer over every command and the Python API (tests/fuzz_inputs.py draws the inputs): received folders
damaged in the ways a folder someone sends can be (links out, malformed records, junk tables), data files crafted
to break a reader (an npz header claiming 10^12 rows, pickled objects, values beyond float32, image folders
linking out), and hostile flag values.

Each input succeeds, or fails with a non-zero status and one line ``clutune: error: ...`` (the API: one UserError
or RunFailed line), never a traceback, and changes no file outside the places it names for writing. The suite
draws a modest number of inputs (``CLUTUNE_FUZZ_EXAMPLES``, 20 by default); bench/fuzz.py draws many more and
records the outcome in bench/results/fuzz.md. A failure prints the falsifying input and a
``@reproduce_failure`` line that replays it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from fuzz_inputs import (
    Case,
    Workspace,
    api_calls,
    changed,
    command_lines,
    interrupt_when_serving,
    judge_cli,
    snapshot,
)
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import clutune
from clutune.cli import main
from clutune.errors import RunFailed, UserError

EXAMPLES = int(os.environ.get("CLUTUNE_FUZZ_EXAMPLES", "20"))
LOG = os.environ.get("CLUTUNE_FUZZ_LOG")  # bench/fuzz.py: one JSON line per input drawn


def _quiet_main(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


@pytest.fixture(scope="module")
def workspace(local_ray, tmp_path_factory):
    """One real run's folder to damage, shared by every input; a Ray the commands join instead of each starting
    its own; the data cache inside the workspace."""
    root = tmp_path_factory.mktemp("fuzz")
    before, cache_env = os.getcwd(), os.environ.get("CLUTUNE_DATA_CACHE")
    os.environ["CLUTUNE_DATA_CACHE"] = str(root / "datacache")
    try:
        yield Workspace.make(root, _quiet_main)
    finally:
        os.chdir(before)
        if cache_env is None:
            os.environ.pop("CLUTUNE_DATA_CACHE", None)
        else:
            os.environ["CLUTUNE_DATA_CACHE"] = cache_env


def _new_case(ws: Workspace) -> Case:
    case = Case(ws, Path(tempfile.mkdtemp(dir=ws.root, prefix="case-")))
    case.cwd.mkdir()
    return case


def _record(case: Case, outcome: str, seconds: float) -> None:
    event(f"{case.notes[0]}: {outcome}")
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps({"input": case.notes, "outcome": outcome, "seconds": round(seconds, 2)}) + "\n")


def _defaults_on_success(case: Case) -> list:
    """A command that succeeded may also have written its documented defaults in the current folder (a sweep's
    runs/, ./mlflow.db for a UI on the default store); a refusal may not."""
    return [case.cwd / "runs", case.cwd / "mlflow.db", case.cwd / "mlruns"]


def _named(case: Case, kwargs: dict) -> list[Path]:
    """An output the call names (a hostile ``out="3"`` is a folder ``3`` in the current folder, legitimately)."""
    out = kwargs.get("out")
    return [case.cwd / out] if isinstance(out, (str, os.PathLike)) and str(out).strip() else []


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


@pytest.mark.slow  # the command fuzzer: in `make test` (the default suite), with the inputs it found kept fast below
@FUZZ
@given(data=st.data())
def test_every_command_succeeds_or_fails_in_one_line_and_writes_only_where_told(workspace, data):
    case = _new_case(workspace)
    argv = data.draw(command_lines(case), label="argv")
    note(f"drawn: {case.notes}")
    before = snapshot(workspace.root, case.writable())
    stderr = io.StringIO()
    start, cwd = time.monotonic(), os.getcwd()
    os.chdir(case.cwd)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            with interrupt_when_serving(argv):
                code = main(argv)  # an exception here is a traceback: Hypothesis reports the input
    finally:
        os.chdir(cwd)
    _record(case, f"exit {code}", time.monotonic() - start)
    judge_cli(code, stderr.getvalue(), argv)
    served = argv[0] in ("ui", "dashboard") and code == 130  # a server ended by Ctrl-C as it started
    allowed = case.writable() + (_defaults_on_success(case) if code == 0 or served else [])
    assert changed(before, snapshot(workspace.root, allowed)) == [], (argv, stderr.getvalue())


@pytest.mark.slow  # the API fuzzer: in `make test` (the default suite), with the inputs it found kept fast below
@FUZZ
@given(data=st.data())
def test_every_api_function_returns_or_raises_one_line_and_writes_only_where_told(workspace, data):
    case = _new_case(workspace)
    function, kwargs = data.draw(api_calls(case), label="call")
    note(f"drawn: {case.notes}")
    before = snapshot(workspace.root, case.writable())
    start, cwd = time.monotonic(), os.getcwd()
    os.chdir(case.cwd)
    outcome = "returned"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = getattr(clutune, function)(**kwargs)
        if function in ("ui", "dashboard"):
            result.stop()
    except (UserError, RunFailed) as e:  # anything else is a traceback a notebook would show
        outcome = type(e).__name__
        assert len(str(e).strip().splitlines()) == 1, str(e)
    finally:
        os.chdir(cwd)
    _record(case, outcome, time.monotonic() - start)
    allowed = case.writable() + (_defaults_on_success(case) if outcome == "returned" else []) + _named(case, kwargs)
    assert changed(before, snapshot(workspace.root, allowed)) == [], (function, kwargs)


# Found by this fuzzer: each was a traceback (or argparse's usage over several lines) before.
FOUND = [
    (["sweep", "--config", "x", "--method", "er", "--trials", "abc"], "argument --trials: invalid int value: 'abc'"),
    (["compare", "--config", "x"], "the following arguments are required: --methods, --out"),
    (["aggregate", "{folder}", "--out", "{out}"], "is not a results table"),
    (["sync", "{folder}", "--tracking-uri", "sqlite:///{store}"], "record.json: not UTF-8 text"),
]


@pytest.mark.parametrize(("argv", "message"), FOUND, ids=["bad-int", "missing-flag", "junk-table", "junk-record"])
def test_inputs_the_fuzzer_found_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    folder = tmp_path / "received"
    (folder / "mlflow-record").mkdir(parents=True)
    (folder / "results.parquet").write_bytes(b"PAR1 not a table PAR1")
    (folder / "mlflow-record" / "record.json").write_bytes(b"\xff\xfe{")
    monkeypatch.chdir(tmp_path)
    names = {"folder": folder, "out": tmp_path / "out", "store": tmp_path / "store" / "m.db"}
    code = main([a.format(**names) for a in argv])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and line.startswith("clutune: error: ") and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["received"]
