"""No secret leaves the process; sync uploads only what lies inside the folder it syncs; folder names with quotes
find their MLflow runs again. A real ``clutune run`` writes the folder, a real sqlite MLflow store takes the sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from clutune.guards.masking import drop_masked_password, mask
from clutune.platform.record.sync import sync_folder
from clutune.platform.record.tracking import RECORD_DIR, SweepTracker

SECRET = "s3cret-Pw"
TRACKING = f"http://alice:{SECRET}@127.0.0.1:9/"  # nothing listens on port 9: the tracker fails soft
STUDY_STORAGE = f"postgresql://bob:{SECRET}@db.example/optuna"


def test_mask_hides_the_password_of_every_uri_and_nothing_else():
    assert mask(TRACKING) == "http://alice:***@127.0.0.1:9/"
    assert mask("postgresql+psycopg2://u:p@ss:w@db:5432/o") == "postgresql+psycopg2://u:***@db:5432/o"
    assert mask({"sweep": {"study_storage": STUDY_STORAGE}, "l": [TRACKING]}) == {
        "sweep": {"study_storage": "postgresql://bob:***@db.example/optuna"},
        "l": ["http://alice:***@127.0.0.1:9/"],
    }
    for plain in ("http://host:5000", "sqlite:////a/b.db", "s3://bucket/x", "http://alice@host", "a:b@c"):
        assert mask(plain) == plain
    assert drop_masked_password(mask(STUDY_STORAGE)) == "postgresql://bob@db.example/optuna"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> tuple[Path, str]:
    """A folder whose name holds both quote characters, written by ``clutune run`` with a password in the
    tracking URI and in the study storage; returns (folder, everything the command printed)."""
    root = tmp_path_factory.mktemp("secrets")
    out = root / 'it\'s "quoted"'
    cmd = [sys.executable, "-m", "clutune.cli", "run", "--config", "digits-random", "--method", "finetune"]
    cmd += ["--out", str(out), "--tracking-uri", TRACKING, "--set", f"sweep.study_storage={STUDY_STORAGE}"]
    cmd += ["--set", "oracle.epochs=1", "--set", f"oracle.cache_dir={root / 'cache'}"]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 3, done.stdout + done.stderr  # results written, MLflow down: exit 3
    return out, done.stdout + done.stderr


def test_no_password_is_printed_or_written(run_folder):
    out, printed = run_folder
    assert SECRET not in printed
    assert "alice:***@127.0.0.1" in printed  # the failure line still names the server
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "record.json" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    record = json.loads((out / RECORD_DIR / "record.json").read_text())
    assert record["config"]["sweep"]["study_storage"] == "postgresql://bob:***@db.example/optuna"
    assert "***" in record["params"]["sweep.study_storage"]


def test_sync_uploads_only_files_inside_the_folder(run_folder, tmp_path):
    out, _ = run_folder
    secret = tmp_path / "home" / ".aws" / "credentials"
    secret.parent.mkdir(parents=True)
    secret.write_text("aws_secret_access_key = do-not-send")
    link = out / "plots" / "innocent.png"
    link.symlink_to(secret)  # inside by name, outside once resolved
    record_path = out / RECORD_DIR / "record.json"
    original = record_path.read_text()
    record = json.loads(original)
    record["artifacts"] += [
        {"trial": None, "path": str(secret), "artifact_path": None},
        {"trial": None, "path": str(out / ".." / ".." / secret.relative_to(tmp_path.parent)), "artifact_path": None},
        {"trial": None, "path": str(link), "artifact_path": "plots"},
    ]
    record_path.write_text(json.dumps(record))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = sync_folder(out, uri)
        refused = [str(w.message) for w in caught if "not uploading" in str(w.message)]
        assert len(refused) == 3 and any(str(secret) in line for line in refused)
        assert any(str(link) in line for line in refused)
        assert first.runs_created == 1 and first.artifacts_logged > 0  # the folder's own files went up
        sent = [p for p in (tmp_path / "mlruns").rglob("*") if p.is_file()]
        assert sent and not any(b"do-not-send" in p.read_bytes() for p in sent)
        # the folder's name holds ' and ": its runs are found again, so a second sync writes nothing
        second = sync_folder(out, uri)
        assert (second.parent_id, second.runs_created, second.steps_logged) == (first.parent_id, 0, 0)
        assert second.artifacts_logged == 0
    finally:
        record_path.write_text(original)
        link.unlink()


@pytest.mark.parametrize("name", ["it's", 'say "hi"', "both ' and \"", "back\\slash'"])
def test_a_resumed_tracker_finds_its_parent_whatever_quotes_the_folder_name_holds(tmp_path, name):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = tmp_path / name
    folder.mkdir()
    first = SweepTracker(uri, "quotes", folder).start_parent("p", {"name": "x"}, {}, {})
    again = SweepTracker(uri, "quotes", folder).start_parent("p", {"name": "x"}, {}, {})
    assert first and again == first
    other = tmp_path / "other"
    other.mkdir()
    assert SweepTracker(uri, "quotes", other).start_parent("p", {"name": "x"}, {}, {}) != first


def test_a_tracker_stores_no_password_in_params(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, "params", tmp_path)
    config = {"name": "x", "sweep": {"study_storage": STUDY_STORAGE}}
    parent = tracker.start_parent("p", config, {}, {"storage": f"s3://k:{SECRET}@bucket/x"})
    from mlflow.tracking import MlflowClient

    params = MlflowClient(uri).get_run(parent).data.params
    assert params["sweep.study_storage"] == "postgresql://bob:***@db.example/optuna"
    assert SECRET not in json.dumps(params)
    assert os.environ.get("MLFLOW_DISABLE_TELEMETRY")  # set when clutune was imported
