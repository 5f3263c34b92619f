"""Whatever moment a driver is killed at, Tune finds what it needs to resume: its files on a disk appear whole or
not at all, a checkpoint an experiment state on storage may still name is never deleted, a resume from an
unreadable state is refused instead of silently starting the grid over, and a fixed grid with a failed run is
refused instead of summarised."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from ray import cloudpickle, tune

from clutune.errors import RunFailed, UserError
from clutune.platform.cluster import tune_storage as ts
from clutune.platform.run.engine import check_resumable, require_complete

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import a test module


def test_a_file_written_for_tune_is_invisible_until_closed(tmp_path):
    path, fs = ts.tune_storage(str(tmp_path))
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
    path, fs = ts.tune_storage(f"file://{tmp_path / 'shared'}")
    fs = pickle.loads(pickle.dumps(fs))  # Tune sends its storage filesystem to every trial actor
    fs.create_dir(f"{path}/exp", recursive=True)
    pafs.copy_files(str(source), f"{path}/exp", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    for name in ("checkpoint_000003/state.pt", "experiment_state-x.json"):
        assert (tmp_path / "shared" / "exp" / name).read_bytes() == (source / name).read_bytes()


def _trainable(config: dict) -> None:
    tune.report({"score": config["x"]})


@pytest.fixture
def torn_experiment(local_ray, tmp_path) -> Path:
    """A real finished Tune experiment at ``out/tune/study`` whose state file a kill cut short."""
    path, fs = ts.tune_storage(str(tmp_path / "out" / "tune"))
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


def test_a_checkpoint_is_deleted_only_after_two_states_land(tmp_path):
    """Tune deletes the older checkpoint as it registers a newer one; the state naming the newer one lands later
    (and the first to land may have been staged before the deletion)."""
    path, fs = ts.tune_storage(str(tmp_path))
    old = tmp_path / "exp" / "trial_a" / "checkpoint_000001"
    old.mkdir(parents=True)
    (old / "state.pt").write_bytes(b"x")
    (tmp_path / "exp" / "trial_a" / "scratch").mkdir()
    (tmp_path / "other").mkdir()

    fs.delete_dir(f"{path}/exp/trial_a/scratch")  # not a checkpoint: gone at once
    fs.delete_dir(f"{path}/exp/trial_a/checkpoint_000001")
    assert not (tmp_path / "exp" / "trial_a" / "scratch").exists() and old.exists()
    for landing in (1, 2):
        with fs.open_output_stream(f"{path}/other/experiment_state-x.json") as f:  # another experiment's state
            f.write(b"{}")
        assert old.exists()
        with fs.open_output_stream(f"{path}/exp/experiment_state-x.json") as f:
            f.write(b"{}")
        assert old.exists() == (landing == 1)


CHECKPOINTS = 6
KILL_AT_SAVE = 3


def _counting(config: dict) -> None:
    """Counts to CHECKPOINTS, checkpointing every step; notes where each start began."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = int((Path(folder) / "i").read_text()) + 1
    with open(config["starts"], "a") as f:
        f.write(f"{start}\n")
    for i in range(start, CHECKPOINTS):
        folder = Path(config["starts"]).parent / f"ckpt-{i}"
        folder.mkdir(exist_ok=True)
        (folder / "i").write_text(str(i))
        tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(folder))


class _KillOnSave(tune.Callback):
    """The driver dies the moment Tune has registered a new checkpoint and asked for the older one's deletion.
    Tune keeps its callbacks with the experiment: the driver that restores it is spared."""

    def __init__(self) -> None:
        self.saves, self.pid = 0, os.getpid()

    def on_trial_save(self, iteration: int, trials: list, trial: object, **info: object) -> None:
        self.saves += 1
        if self.saves == KILL_AT_SAVE and os.getpid() == self.pid:
            os._exit(9)


def _run_counting(folder: str, starts: str) -> None:
    """The killed driver (run in a subprocess)."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    path, fs = ts.tune_storage(folder)
    run_config = tune.RunConfig(
        name="count",
        storage_path=path,
        storage_filesystem=fs,
        callbacks=[_KillOnSave()],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        verbose=0,
    )
    tune.Tuner(_counting, param_space={"starts": starts}, run_config=run_config).fit()


@pytest.mark.slow  # a driver killed, then resumed
def test_a_driver_killed_as_tune_drops_a_checkpoint_resumes_from_one(local_ray, tmp_path):
    starts = tmp_path / "starts.txt"
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_tune_storage as t; "
    code += f"t._run_counting({str(tmp_path / 'tune')!r}, {str(starts)!r})"
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stdout[-2000:] + killed.stderr[-2000:]

    path, fs = ts.tune_storage(str(tmp_path / "tune"))
    assert tune.Tuner.can_restore(f"{path}/count", storage_filesystem=fs)
    tuner = tune.Tuner.restore(f"{path}/count", _counting, resume_unfinished=True, storage_filesystem=fs)
    results = tuner.fit()
    ts.settle(f"{path}/count", results)
    assert results.num_errors == 0, results.errors
    assert results[0].metrics["i"] == CHECKPOINTS - 1
    begun = [int(line) for line in starts.read_text().split()]
    assert begun[0] == 0 and 0 < begun[1] <= KILL_AT_SAVE  # resumed from a checkpoint, not from the start
    remaining = sorted(p.name for p in (tmp_path / "tune" / "count").glob("*/checkpoint_*"))
    assert remaining == [f"checkpoint_{CHECKPOINTS - 1:06d}"]  # the spare ones deleted once the run ended


def _fails_for_two(config: dict) -> None:
    if config["x"] == 2:
        raise ValueError("x=2 cannot be run")
    tune.report({"score": config["x"]})


@pytest.mark.slow  # a Ray grid with a failing run: `make test` runs it (docs/testing.md)
def test_a_fixed_grid_with_a_failed_run_is_refused(local_ray, tmp_path):
    path, fs = ts.tune_storage(str(tmp_path / "tune"))
    run_config = tune.RunConfig(name="grid", storage_path=path, storage_filesystem=fs, verbose=0)
    grid = tune.Tuner(_fails_for_two, param_space={"x": tune.grid_search([1, 2, 3])}, run_config=run_config).fit()
    with pytest.raises(RunFailed, match=r"^1 of 3 runs failed, first x 2: ValueError: x=2 cannot be run; .*--resume"):
        require_complete(grid, tmp_path)
    whole = tune.Tuner(_trainable, param_space={"x": tune.grid_search([1, 2])}, run_config=run_config).fit()
    require_complete(whole, tmp_path)  # nothing failed: nothing said
