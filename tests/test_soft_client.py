"""The tracker's soft MLflow client turns only the store's own failures into "tracking is down": a misspelt
client method or a call with the wrong arguments is clutune's bug, and raises where it happens."""

from __future__ import annotations

import pytest

from clutune.platform.record import tracking
from clutune.platform.record.tracking import SweepTracker


@pytest.fixture(autouse=True)
def own_failures(monkeypatch):
    """The process-wide list of failed trackers, empty here and left as it was: a later in-process CLI call
    must not exit 3 for these."""
    monkeypatch.setattr(tracking, "_FAILED", [])


@pytest.fixture
def tracker(tmp_path):
    return SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "soft-client", tmp_path / "sweep")


def test_a_misspelt_method_raises_and_tracking_stays_up(tracker):
    with pytest.raises(AttributeError, match="get_experiment_by_nme"):
        tracker.client.get_experiment_by_nme("soft-client")
    with pytest.raises(TypeError):
        tracker.client.get_experiment_by_name("soft-client", "an argument too many")
    assert tracker.error is None
    assert tracker.client.get_experiment_by_name("soft-client").experiment_id == tracker.experiment_id


def test_a_misspelt_method_raises_with_tracking_off(tmp_path):
    off = SweepTracker("sqlite:///unused.db", "soft-client", tmp_path / "sweep", enabled=False)
    assert off.client.log_batch("run", metrics=[]) is None  # --no-tracking: nothing is written
    with pytest.raises(AttributeError, match="log_bach"):
        off.client.log_bach("run", metrics=[])


def test_a_store_error_marks_tracking_down_and_later_writes_are_skipped(tracker):
    assert tracker.client.get_run("no-such-run") is None  # the sqlite store's own RESOURCE_DOES_NOT_EXIST
    assert tracker.error is not None and tracker.error.startswith("get_run: MlflowException: ")
    assert tracker.client.get_experiment_by_name("soft-client") is None and tracker.skipped == 1
    assert tracker.failure_line().startswith(f"MLflow at {tracker.uri} failed (get_run: MlflowException")


def test_a_damaged_store_file_marks_tracking_down(tmp_path):
    db = tmp_path / "mlflow.db"
    tracker = SweepTracker(f"sqlite:///{db}", "soft-client", tmp_path / "sweep")
    db.write_bytes(b"not a database" * 512)
    assert tracker.client.search_runs([tracker.experiment_id]) is None
    assert tracker.error is not None and tracker.error.startswith("search_runs: ")
    assert tracking.tracking_failures() == [tracker.failure_line()]
