"""A method bug that every retry would repeat fails once, in one line naming the method, the request and the
method's own line, with no --resume advice: in `clutune run`, `compare` and `sweep` alike. The method is a real
plugin package (installed with pip into a folder of its own, found through its entry point by Ray workers too),
which fetches ids it was asked to unlearn: the privacy door refuses them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGE = {
    "pyproject.toml": """\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "clutune-reads-unlearned"
        version = "0.1.0"

        [project.entry-points."clutune.methods"]
        reads_unlearned = "reads_unlearned:ReadsUnlearned"

        [tool.setuptools]
        py-modules = ["reads_unlearned"]
        """,
    "reads_unlearned.py": """\
        from clutune.clu.methods.er import ER


        class ReadsUnlearned(ER):
            name = "reads_unlearned"

            def unlearn(self, request):
                super().unlearn(request)
                self.forgotten = request.ids

            def learn(self, request):
                super().learn(request)
                if hasattr(self, "forgotten"):
                    self.data.fetch(self.forgotten[:4])  # THE OFFENDING CALL
        """,
}

CONFIG = """\
name: recurring
dataset: {name: digits}
model: {name: mlp, hidden: [16]}
oracle: {epochs: 2}
probe_size: 0
scenario:
  classes_per_task: 2
  requests:
    - learn: {task: 0}
    - unlearn: {classes: [1]}
    - learn: {task: 1}
methods:
  reads_unlearned: {epochs_per_learn: 1, iters_per_unlearn: 3, buffer_size: 50}
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("recurring")
    source = tmp / "package"
    source.mkdir()
    for name, text in PACKAGE.items():
        (source / name).write_text(textwrap.dedent(text))
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*cmd, "--target", str(tmp / "site"), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (tmp / "cfg.yaml").write_text(CONFIG)
    (tmp / "space.yaml").write_text("method: reads_unlearned\nparams:\n  lr: {type: float, low: 0.01, high: 0.1}\n")
    return tmp


def _clutune(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp / "site"), str(ROOT)])}
    common = ["--config", "cfg.yaml", "--no-tracking", "--set", f"oracle.cache_dir={tmp / 'oracles'}"]
    cmd = [sys.executable, "-m", "clutune.cli", *args, *common]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env, timeout=600)


COMMANDS = {
    "run": ["run", "--method", "reads_unlearned", "--out", "run"],
    "compare": ["compare", "--methods", "reads_unlearned", "--seeds", "0", "--out", "compare", "--num-cpus", "2"],
    "sweep": [
        "sweep",
        "--method",
        "reads_unlearned",
        "--space",
        "space.yaml",
        "--trials",
        "3",
        "--concurrency",
        "1",
        "--num-cpus",
        "2",
        "--set",
        "sweep.asha=false",
        "--set",
        "sweep.storage_path=sweeps",
    ],
}


# compare and sweep are Ray grids (`make test`); run keeps the check in the fast loop
@pytest.mark.parametrize("command", [c if c == "run" else pytest.param(c, marks=pytest.mark.slow) for c in COMMANDS])
def test_a_method_that_trips_the_privacy_door_fails_once_in_one_line(plugin: Path, command: str) -> None:
    done = _clutune(plugin, *COMMANDS[command])
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("clutune: error: ")]
    assert len(errors) == 1, done.stderr[-4000:]
    site = plugin / "site" / "reads_unlearned.py"
    line = next(n for n, text in enumerate(site.read_text().splitlines(), 1) if "THE OFFENDING CALL" in text)
    assert errors[0].startswith(
        f"clutune: error: method reads_unlearned failed at request 2 (learn), called at {site}:{line}: "
        "training step requested unlearned sample id "
    ), errors[0]
    assert errors[0].endswith("; a retry would fail the same way")
    assert output.count("requested unlearned sample id") == 1, output[-4000:]  # not retried, no traceback
    assert "Traceback" not in output and "--resume" not in output
    if command == "sweep":  # the first trial's failure ends the sweep: no other trial starts
        assert output.count("failed at request 2") == 2, output[-4000:]  # its progress line and the error line
