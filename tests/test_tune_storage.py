"""Tune's files on a disk appear whole or not at all, and a resume from an unreadable experiment state is refused
instead of silently starting the grid over (which recorded every row and MLflow run twice)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from ray import tune

from clutune import storage
from clutune.errors import UserError
from clutune.platform.engine import check_resumable


def test_a_file_written_for_tune_is_invisible_until_closed(tmp_path):
    path, fs = storage.tune_storage(str(tmp_path))
    stream = fs.open_output_stream(f"{path}/experiment_state-x.json")
    stream.write(b'{"trial_data": [')
    assert not (tmp_path / "experiment_state-x.json").exists()  # a kill here leaves no torn state behind
    stream.write(b"]}")
    stream.close()
    assert (tmp_path / "experiment_state-x.json").read_bytes() == b'{"trial_data": []}'
    assert [p.name for p in tmp_path.iterdir()] == ["experiment_state-x.json"]


def test_tune_uploads_through_it_unchanged_and_it_travels_to_workers(tmp_path):
    source = tmp_path / "staging"
    (source / "checkpoint_000003").mkdir(parents=True)
    (source / "checkpoint_000003" / "state.pt").write_bytes(bytes(range(256)) * 40_000)
    (source / "experiment_state-x.json").write_text('{"a": 1}')
    path, fs = storage.tune_storage(f"file://{tmp_path / 'shared'}")
    fs = pickle.loads(pickle.dumps(fs))  # Tune sends its storage filesystem to every trial actor
    fs.create_dir(f"{path}/exp", recursive=True)
    pafs.copy_files(str(source), f"{path}/exp", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    for name in ("checkpoint_000003/state.pt", "experiment_state-x.json"):
        assert (tmp_path / "shared" / "exp" / name).read_bytes() == (source / name).read_bytes()
    assert storage.tune_storage("s3://bucket/sweeps") == ("s3://bucket/sweeps", None)  # objects are whole already


def _trainable(config: dict) -> None:
    tune.report({"score": config["x"]})


@pytest.fixture
def torn_experiment(local_ray, tmp_path) -> Path:
    """A real finished Tune experiment at ``out/tune/study`` whose state file a kill cut short."""
    path, fs = storage.tune_storage(str(tmp_path / "out" / "tune"))
    run_config = tune.RunConfig(name="study", storage_path=path, storage_filesystem=fs, verbose=0)
    tune.Tuner(_trainable, param_space={"x": tune.grid_search([1, 2])}, run_config=run_config).fit()
    folder = tmp_path / "out" / "tune" / "study"
    check_resumable(str(folder), "nothing")  # whole: resumable
    (state,) = folder.glob("experiment_state-*.json")
    state.write_bytes(state.read_bytes()[:40])
    return folder


def test_a_torn_experiment_state_is_refused_in_one_line(torn_experiment, tmp_path):
    with pytest.raises(UserError, match=r"experiment state .* is unreadable .*--overwrite"):
        check_resumable(str(torn_experiment), "nothing")
    with pytest.raises(UserError, match="nothing to resume"):
        check_resumable(str(tmp_path / "elsewhere"), "nothing to resume")

    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    cmd = [str(Path(sys.executable).parent / "clutune"), "study", "--config", "digits-long-200", "--methods"]
    cmd += ["finetune", "--seeds", "0", "--out", str(tmp_path / "out"), "--no-tracking", "--resume"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "unreadable" in line and "--overwrite" in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no work started
