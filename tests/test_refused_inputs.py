"""Bad input is one line on stderr and exit 2, before anything is written: no output folder, no MLflow store, no
cache entry, nothing in the current folder. Each case here broke that promise before (a traceback, exit 0 with a
NaN result, or files written first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clutune.cli import main
from clutune.core import storage
from clutune.errors import UserError
from clutune.platform.record.tracking import resolve_tracking_uri

RUN = ["run", "--config", "digits-random", "--method", "finetune", "--no-tracking"]


def _refused(tmp_path: Path, capsys, argv: list[str]) -> str:
    """Run ``clutune argv`` in an empty current folder; assert exit 2, one line, nothing written; the line."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.chdir(cwd)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("clutune: error: "), err
    assert list(cwd.iterdir()) == []  # no ./mlflow.db, no folder
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
    return err[0]


@pytest.fixture(autouse=True)
def _restore_cwd():
    before = os.getcwd()
    yield
    os.chdir(before)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("oracle.epochs=[1,", "cannot parse value '[1,': expected the node content"),
        ("oracle.lr=.nan", "'oracle.lr': expected a finite number"),
        ("oracle.lr=-1", "'oracle.lr': must be a finite number in (0, 1000]"),
        ("oracle.momentum=.inf", "'oracle.momentum': expected a finite number"),
        ("oracle.weight_decay=-0.1", "'oracle.weight_decay'"),
        ("oracle.seed=-3", "'oracle.seed': a seed must be in 0..4294967295"),
        ("device=bogus", "'device': 'bogus' is not a device"),
        ("device=cuda:x", "'device': 'cuda:x' is not a device"),
        ("model.hidden=[-5]", "'model.hidden[0]': a layer width must be in 1..65536"),
        ("model.hidden=[100000000000]", "'model.hidden[0]'"),
        ("scenario.requests=[{learn: {ids: [100000000000000000000]}}]", "ids 100000000000000000000 is out of range"),
        ("scenario.requests=[{learn: {ids: [-1]}}]", "ids -1 is out of range"),
        ("scenario.requests=[{unlearn: {fraction: .nan}}]", "fraction must be a number in (0, 1)"),
        ("scenario.generate.n_requests=1000000000000", "more than this machine's"),
        ("name=../../x", "'name' '../../x': must not contain a path separator"),
        ("name=..", "must not be '..'"),
        ('name="a\\x01b"', "must not contain control characters"),
        ("sweep.storage_path=file://runs", "file:///absolute/path"),
        ("sweep.storage_path=ftp://host/x", "unsupported URI scheme ftp://"),
        ("seed=100000000000000000000000", "out of range"),
        ("threads=-1", "'threads'"),
        ("sweep.trial_resources.cpu=.inf", "expected a finite number"),
    ],
)
def test_a_bad_config_value_is_refused_before_anything(tmp_path, capsys, override, says):
    argv = [*RUN, "--out", str(tmp_path / "out"), "--set", override, "--set", f"oracle.cache_dir={tmp_path / 'cache'}"]
    if "generate" in override:
        argv += ["--set", "scenario.requests=[]"]
    assert says in _refused(tmp_path, capsys, argv)


def test_a_config_that_is_a_folder_or_not_utf8_is_refused(tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert "is a folder" in _refused(tmp_path, capsys, [*RUN, "--out", str(tmp_path / "out"), "--config", str(folder)])
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    capsys.readouterr()
    line = _refused(tmp_path / "a-folder", capsys, [*RUN, "--out", str(tmp_path / "out"), "--config", str(latin)])
    assert "not a UTF-8 text file" in line


def test_malformed_yaml_in_a_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\noracle: {epochs: [1,\n")
    line = _refused(tmp_path, capsys, [*RUN, "--out", str(tmp_path / "out"), "--config", str(bad)])
    assert "malformed YAML" in line and "line" in line


def test_report_and_export_refuse_before_mlflow_creates_a_store(tmp_path, capsys):
    line = _refused(tmp_path, capsys, ["report", "/no/such/folder", "--out", str(tmp_path / "r.html")])
    assert "/no/such/folder: is not a folder" in line
    line = _refused(tmp_path / "cwd", capsys, ["export", "--experiment", "no-such", "--out", "x.parquet"])
    assert "no MLflow store at sqlite:///" in line


def test_tracking_uris_mlflow_has_no_store_for_are_refused(tmp_path, capsys):
    for uri in ("ftp://host/x", "http://", "sqlite://relative.db", "file://host/x"):
        with pytest.raises(UserError, match="tracking URI"):
            resolve_tracking_uri(uri)
    for uri in ("http://h:5000", "https://h", "sqlite:///m.db", "file:///tmp/x", "postgresql+psycopg2://u@h/d", "runs"):
        assert resolve_tracking_uri(uri) == uri
    line = _refused(
        tmp_path, capsys, ["export", "--experiment", "e", "--out", "x.parquet", "--tracking-uri", "ftp://h"]
    )
    assert "unsupported scheme ftp://" in line


def test_file_uris_follow_the_standard_rules():
    assert storage.local_path("file:///srv/runs%20x") == "/srv/runs x"
    assert storage.local_path("file://localhost/srv/runs") == "/srv/runs"
    for relative in ("file://runs", "file://runs/sweeps", "file://host/abs"):
        with pytest.raises(UserError, match=r"file:///absolute/path"):
            storage.check_location(relative, "--out")


def test_telemetry_is_off_unless_the_user_turns_it_on():
    probe = "import os, clutune; print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'), os.environ.get('DO_NOT_TRACK'))"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["true", "1"]
    env["MLFLOW_DISABLE_TELEMETRY"] = "false"  # the documented way to turn it on
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["false", "None"]
