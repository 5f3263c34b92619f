"""A Python call with a quiet ``log=`` prints nothing at all: not clutune's lines, nor Ray's start-up line, Tune's
experiment box, MLflow's database messages or Optuna's study line, which go to ``libraries.log`` in the run's
folder instead. Given its folders and tracking store, a command adds nothing to the folder it runs in: MLflow's
artifacts lie in ``mlruns/`` beside the sqlite store (docs/data.md, Where clutune reads and writes).

Each case is a fresh Python process in an empty folder, as a notebook or a script would be. The libraries' logged
warnings still reach ``log``, one line each; Python's warnings stay in the file."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from clutune.platform.run.log import libraries_logged

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from pathlib import Path

import clutune

tmp = Path(sys.argv[1])
config = {
    "name": "quiet",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [16]},
    "oracle": {"epochs": 2, "cache_dir": str(tmp / "oracles")},
    "scenario": {"requests": [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"classes": [1]}}]},
    "sweep": {"storage_path": str(tmp / "sweeps"), "sampler": "random", "asha": False},
}
fast = {"epochs_per_learn": 1, "iters_per_unlearn": 5, "buffer_size": 40}
quiet = dict(overrides=fast, tracking_uri=f"sqlite:///{tmp / 'db' / 'mlflow.db'}", log=lambda line: None)
for call in sys.argv[2].split(","):
    if call == "compare":
        clutune.compare(config, methods=["er"], seeds=[0], out=tmp / "compare", num_cpus=2, **quiet)
    if call == "run":
        clutune.run(config, method="er", out=tmp / "run", **quiet)
    if call == "sweep":
        clutune.sweep(config, method="er", trials=1, concurrency=1, num_cpus=2, **quiet)
"""

# Where each call's folder is, and a line of every library whose log it holds.
LIBRARY_LINES = {
    "compare": ("compare", ["Started a local Ray instance", "mlflow.store.db.utils"]),
    "sweep": ("sweeps/quiet-er", ["Started a local Ray instance", "A new study created"]),
}


def test_a_librarys_logged_warning_reaches_the_log_as_one_line_and_all_of_it_the_file(tmp_path: Path) -> None:
    ray_logger = logging.getLogger("ray")
    before = (ray_logger.handlers[:], ray_logger.propagate)
    lines: list[str] = []
    with libraries_logged(tmp_path, lines.append) as path:
        logging.getLogger("optuna.storages").info("A new study created")
        logging.getLogger("mlflow.store").warning("the store is slow\nsecond line, http://alice:pw-123@host:5000")
        warnings.warn("too few trials", UserWarning, stacklevel=1)
    assert lines == [f"mlflow.store warning: the store is slow (all of it in {path})"]  # the warning: file only
    text = path.read_text()
    assert "INFO optuna.storages: A new study created" in text and "second line" in text
    assert f"{__file__}:{_line_of('too few trials')}: UserWarning: too few trials" in text
    assert "http://alice:***@host:5000" in text and "pw-123" not in text  # a URI's password never reaches the file
    assert (ray_logger.handlers, ray_logger.propagate) == before  # the library's own handlers are back


def _line_of(text: str) -> int:
    return next(n for n, line in enumerate(Path(__file__).read_text().splitlines(), 1) if f'"{text}"' in line)


# a fresh process starting its own Ray per case: minutes on a loaded 2-core machine
@pytest.mark.slow
@pytest.mark.parametrize("calls", ["compare,run", "sweep"])
def test_a_quiet_log_prints_nothing_and_the_working_folder_stays_empty(tmp_path: Path, calls: str) -> None:
    cwd, tmp = tmp_path / "cwd", tmp_path / "t"
    cwd.mkdir()
    (tmp / "db").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp), calls], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout == "" and done.stderr == "", (done.stdout[-3000:], done.stderr[-3000:])
    assert sorted(cwd.iterdir()) == []
    assert (tmp / "db" / "mlruns").is_dir()  # MLflow's artifacts: beside its sqlite store, as documented
    for call in calls.split(","):
        if call in LIBRARY_LINES:  # run starts no Ray, and compare created the MLflow store before it
            folder, lines = LIBRARY_LINES[call]
            log = (tmp / folder / "libraries.log").read_text()
            assert all(line in log for line in lines), log
